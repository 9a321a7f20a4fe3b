package training

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/runs"
)

func testIndex(ids ...string) *channelIndex {
	objs := map[string]string{}
	for _, id := range ids {
		for _, c := range []string{"red", "green", "blue", "yellow"} {
			objs["training/images/"+id+"_"+c+".png"] = "etag-" + id + c
		}
	}
	objs["training/images/half_red.png"] = "x" // only one channel
	return newChannelIndex(objs)
}

func TestParseLabelFile(t *testing.T) {
	ix := testIndex("a", "b", "c")
	rows, err := ParseLabelFile("training/labels/ok.csv", "e", []byte("Id,Target\na,0 5\nb,\nc,27\n"), ix)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].ID != "a" || len(rows[0].Targets) != 2 || len(rows[1].Targets) != 0 || rows[2].Targets[0] != 27 {
		t.Errorf("rows %+v", rows)
	}
	for _, tc := range []struct {
		name, body string
		want       []string // substrings of the row reasons, in order
		lines      []int
	}{
		{"unknown class", "Id,Target\na,0 28\nb,1\n", []string{"unknown class id 28"}, []int{2}},
		{"not an integer", "Id,Target\na,x\n", []string{`class id "x" is not an integer`}, []int{2}},
		{"duplicate id", "Id,Target\na,1\nb,2\na,3\n", []string{"Id repeated (first on line 2)"}, []int{4}},
		{"missing images", "Id,Target\na,1\nhalf,2\nnone,3\n", []string{"missing images: green, blue, yellow", "missing images: red, green, blue, yellow"}, []int{3, 4}},
		{"bad header", "Name,Target\na,1\n", []string{"header must be Id,Target"}, []int{1}},
		{"malformed csv", "Id,Target\na,\"1\nb,2\n", []string{"quote"}, nil},
		{"empty", "Id,Target\n", []string{"no labeled rows"}, nil},
		{"several faults", "Id,Target\na,1 1\nb,99\n", []string{"class id 1 repeated", "unknown class id 99"}, []int{2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseLabelFile("training/labels/bad.csv", "e", []byte(tc.body), ix)
			var lfe *LabelFileError
			if !errors.As(err, &lfe) {
				t.Fatalf("err %v, want *LabelFileError", err)
			}
			if lfe.Schema != "hpa.error/v1" || lfe.Object != "training/labels/bad.csv" || lfe.Kind != KindLabels {
				t.Errorf("record %+v", lfe)
			}
			if len(lfe.Rows) != len(tc.want) {
				t.Fatalf("rows %+v, want %d", lfe.Rows, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(lfe.Rows[i].Reason, w) {
					t.Errorf("row %d reason %q, want %q", i, lfe.Rows[i].Reason, w)
				}
				if tc.lines != nil && lfe.Rows[i].Line != tc.lines[i] {
					t.Errorf("row %d line %d, want %d", i, lfe.Rows[i].Line, tc.lines[i])
				}
			}
		})
	}
}

func TestIsLabelFile(t *testing.T) {
	for key, want := range map[string]bool{
		"training/labels/a.csv": true, "training/labels/sub/B.CSV": true, "training/labels/a.csv.error.json": false,
		"training/images/a.csv": false, "training/labels/a.txt": false,
	} {
		if got := IsLabelFile("training/labels/", key); got != want {
			t.Errorf("%s: %v", key, got)
		}
	}
}

func TestGuard(t *testing.T) {
	g := DefaultGuard()
	mk := func(macro float64, f1 map[int]float64, pos int) Scores {
		s := Scores{MacroF1: macro, PerClass: make([]ClassScore, 28)}
		for c := range s.PerClass {
			s.PerClass[c] = ClassScore{F1: 0.5, Positives: pos}
		}
		for c, v := range f1 {
			s.PerClass[c].F1 = v
		}
		return s
	}
	prod := mk(0.60, nil, 30)
	if ok, reason, _ := Guard(g, mk(0.596, nil, 30), prod); !ok {
		t.Errorf("within tolerance rejected: %s", reason)
	}
	if ok, reason, _ := Guard(g, mk(0.594, nil, 30), prod); ok || !strings.Contains(reason, "macro-F1 0.5940 < 0.6000 - 0.0050") {
		t.Errorf("worse accepted or reason %q", reason)
	}
	ok, reason, classes := Guard(g, mk(0.70, map[int]float64{3: 0.40}, 30), prod)
	if ok || !strings.Contains(reason, "Nucleoli fibrillar center 0.500 -> 0.400") {
		t.Errorf("class drop accepted: %s", reason)
	}
	bad := 0
	for _, c := range classes {
		if !c.OK {
			bad++
		}
	}
	if bad != 1 || len(classes) != 28 {
		t.Errorf("classes %d bad of %d", bad, len(classes))
	}
	// Classes with fewer than 20 positives are not checked.
	if ok, reason, classes := Guard(g, mk(0.70, map[int]float64{3: 0.0}, 10), mk(0.6, nil, 10)); !ok || len(classes) != 0 {
		t.Errorf("rare class checked: %v %s", ok, reason)
	}
	_ = runs.ActionPromote
}

// A worker stages the images a snapshot froze; one replaced since (another ETag) fails the job
// instead of training on data the snapshot does not describe.
func TestStageDataRefusesChangedImages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	data := synthData(t, 4, 12)
	e.uploadImages(t, data, "training/images/")
	reg := &registry{store: e.store, imagesPrefix: "training/images/"}
	ix, err := reg.images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snap := &Snapshot{Schema: DatasetSchema}
	for _, id := range sortedIDs(ix) {
		keys, etags, _ := ix.Channels(id)
		snap.Samples = append(snap.Samples, Sample{ID: id, Targets: []int{0}, Keys: keys, ETags: etags})
	}
	snap.Digest = digestSamples(snap.Samples)
	key, err := writeSnapshot(ctx, e.store, "datasets/", snap)
	if err != nil {
		t.Fatal(err)
	}
	e.put(t, "training/runs/r/data/train.csv", snap.TrainCSV())
	e.put(t, "training/runs/r/data/folds.csv", []byte("Id,fold\n"))
	job := Job{Run: "r", Dataset: key, Data: "training/runs/r/data/"}
	dir := filepath.Join(t.TempDir(), "data")
	if err := stageData(ctx, e.store, job, dir); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "train")); len(ents) != 2*16 { // images and their ETag stamps
		t.Errorf("%d files staged", len(ents))
	}
	// Replace one image after the snapshot.
	e.put(t, snap.Samples[1].Keys[2], []byte("changed"))
	err = stageData(ctx, e.store, job, filepath.Join(t.TempDir(), "data2"))
	if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), snap.Samples[1].Keys[2]) {
		t.Errorf("changed image: %v", err)
	}
}
