package synth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

func generate(t *testing.T, o Options) (Summary, map[string][]byte) {
	t.Helper()
	s, err := Generate(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	err = filepath.WalkDir(o.Out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(o.Out, p)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, files
}

func TestGenerateDeterministicAcrossWorkers(t *testing.T) {
	o := Options{Samples: 7, Size: 64, Seed: 5}
	o.Out, o.Workers = t.TempDir(), 1
	_, a := generate(t, o)
	o.Out, o.Workers = t.TempDir(), 4
	_, b := generate(t, o)
	if len(a) != 4*7+1 {
		t.Fatalf("%d files, want %d", len(a), 4*7+1)
	}
	if len(a) != len(b) {
		t.Fatalf("1 worker wrote %d files, 4 workers %d", len(a), len(b))
	}
	for name, data := range a {
		if !bytes.Equal(data, b[name]) {
			t.Errorf("%s differs between 1 and 4 workers", name)
		}
	}
	// Regenerating into the same directory rewrites identical bytes.
	o.Workers = 3
	_, c := generate(t, o)
	for name, data := range a {
		if !bytes.Equal(data, c[name]) {
			t.Errorf("%s differs on regeneration", name)
		}
	}
	// Another seed: other Ids, other images.
	o.Out, o.Seed = t.TempDir(), 6
	_, d := generate(t, o)
	if bytes.Equal(a["train.csv"], d["train.csv"]) {
		t.Error("seeds 5 and 6 gave the same train.csv")
	}
}

var idRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-11e8-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestGenerateFormat(t *testing.T) {
	o := Options{Out: t.TempDir(), Samples: 5, Size: 72, Seed: 9, Workers: 2}
	sum, files := generate(t, o)
	csv := files["train.csv"]
	if !bytes.HasPrefix(csv, []byte("Id,Target\n")) {
		t.Fatalf("train.csv starts %q", csv[:min(len(csv), 20)])
	}
	rows, err := labels.ReadTargets(bytes.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Plan(o.Seed, o.Samples)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != o.Samples {
		t.Fatalf("%d rows", len(rows))
	}
	var bytesTotal int64
	for _, b := range files {
		bytesTotal += int64(len(b))
	}
	if sum.Files != 4*o.Samples || sum.Bytes != bytesTotal || sum.ClassCounts != ClassCounts(rows) {
		t.Errorf("summary %+v; %d bytes on disk", sum, bytesTotal)
	}
	for i, row := range rows {
		if row.ID != plan[i].ID || !slices.Equal(row.Labels, plan[i].Labels) {
			t.Errorf("row %d %+v, plan %+v", i, row, plan[i])
		}
		if !idRE.MatchString(row.ID) {
			t.Errorf("Id %q does not look like an HPA Id", row.ID)
		}
		for c, name := range pipeline.ChannelNames {
			rel := filepath.Join("train", row.ID+"_"+name+".png")
			data, ok := files[rel]
			if !ok {
				t.Fatalf("missing %s", rel)
			}
			img, err := png.Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
			g, ok := img.(*image.Gray)
			if !ok {
				t.Fatalf("%s decodes as %T, want 8-bit gray", rel, img)
			}
			if g.Rect != image.Rect(0, 0, o.Size, o.Size) {
				t.Errorf("%s is %v", rel, g.Rect)
			}
			want := Render(o.Seed, row.ID, row.Labels, o.Size)[c]
			if !bytes.Equal(g.Pix, want.Pix) {
				t.Errorf("%s differs from Render", rel)
			}
		}
	}
	for name := range files {
		if filepath.Ext(name) == ".tmp" {
			t.Errorf("left temporary file %s", name)
		}
	}
}

func TestPlanIDsUniqueAndDistinctFromReal(t *testing.T) {
	plan, err := Plan(1, 3000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range plan {
		if seen[r.ID] {
			t.Fatalf("duplicate Id %s", r.ID)
		}
		seen[r.ID] = true
	}
	for _, r := range realRows(t) {
		if seen[r.ID] {
			t.Errorf("synthetic Id %s collides with a real one", r.ID)
		}
	}
	if _, err := Plan(1, -1); err == nil {
		t.Error("negative sample count accepted")
	}
}

func TestGenerateOptionErrors(t *testing.T) {
	dir := t.TempDir()
	good := Options{Out: dir, Samples: 1, Size: 32, Seed: 1}
	for _, tc := range []struct {
		opt  string
		edit func(*Options)
	}{
		{"out", func(o *Options) { o.Out = "" }},
		{"samples", func(o *Options) { o.Samples = 0 }},
		{"samples", func(o *Options) { o.Samples = MaxSamples + 1 }},
		{"size", func(o *Options) { o.Size = MinSize - 1 }},
		{"size", func(o *Options) { o.Size = MaxSize + 1 }},
		{"workers", func(o *Options) { o.Workers = -1 }},
	} {
		o := good
		tc.edit(&o)
		_, err := Generate(context.Background(), o)
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Option != tc.opt {
			t.Errorf("%+v: got %v, want an OptionError for %s", o, err, tc.opt)
		}
	}
	// Output below a regular file: a FileError naming the path.
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o := good
	o.Out = file
	_, err := Generate(context.Background(), o)
	var fe *FileError
	if !errors.As(err, &fe) || fe.Path != filepath.Join(file, "train") {
		t.Errorf("got %v, want a FileError for %s", err, filepath.Join(file, "train"))
	}
}

func TestGenerateCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o := Options{Out: t.TempDir(), Samples: 50, Size: 32, Seed: 1, Workers: 2}
	if _, err := Generate(ctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(o.Out, "train.csv")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("train.csv written by a cancelled run: %v", err)
	}
}

func TestRenderInputs(t *testing.T) {
	for _, size := range []int{0, -3} {
		for _, g := range Render(1, "x", []int{0}, size) {
			if g == nil || g.Rect.Dx() != 0 {
				t.Errorf("size %d: %v", size, g)
			}
		}
	}
	// Invalid and repeated labels are ignored; order does not matter.
	a := Render(1, "x", []int{0, 25}, 48)
	b := Render(1, "x", []int{25, 99, -1, 0, 0}, 48)
	for c := range a {
		if !bytes.Equal(a[c].Pix, b[c].Pix) {
			t.Errorf("%s channel depends on invalid/repeated labels or order", pipeline.Channel(c))
		}
	}
	// The labels change the green channel only; the Id changes everything.
	c := Render(1, "x", []int{23}, 48)
	if bytes.Equal(a[pipeline.Green].Pix, c[pipeline.Green].Pix) {
		t.Error("green does not depend on the labels")
	}
	d := Render(1, "y", []int{0, 25}, 48)
	for ch := range a {
		if bytes.Equal(a[ch].Pix, d[ch].Pix) {
			t.Errorf("%s channel does not depend on the Id", pipeline.Channel(ch))
		}
	}
	// Tiny sizes still render without trouble.
	for _, size := range []int{1, 2, 5, 16} {
		if g := Render(3, "t", []int{16, 17, 22}, size)[pipeline.Blue]; g.Rect.Dx() != size {
			t.Errorf("size %d gave %v", size, g.Rect)
		}
	}
	if err := ValidateSample("x", []int{0, 27}, 64); err != nil {
		t.Error(err)
	}
	var oe *OptionError
	if err := ValidateSample("x", []int{28}, 64); !errors.As(err, &oe) || oe.Option != "labels" {
		t.Errorf("class 28: %v", err)
	}
	if err := ValidateSample("x", []int{1}, 0); !errors.As(err, &oe) || oe.Option != "size" {
		t.Errorf("size 0: %v", err)
	}
}

// TestCounterstains checks the stains' layout: DNA where the cells' nuclei are, microtubules and
// ER in the cytoplasm around them, all brighter in cells than in the background.
func TestCounterstains(t *testing.T) {
	const size = 96
	var nucBlue, cytBlue, nucRed, cytRed, nucYel, cytYel, bgRed float64
	for i := range 8 {
		id := fmt.Sprint("cs", i)
		ch := Render(4, id, []int{0}, size)
		s := newScene(newRNGFor(4, id), size, [labels.NumClasses]bool{})
		var nn, nc, nb float64
		var sums [7]float64
		for idx := range s.owner {
			switch {
			case s.owner[idx] < 0:
				nb++
				sums[6] += float64(ch[pipeline.Red].Pix[idx])
			case s.rn[idx] < 0.8:
				nn++
				sums[0] += float64(ch[pipeline.Blue].Pix[idx])
				sums[2] += float64(ch[pipeline.Red].Pix[idx])
				sums[4] += float64(ch[pipeline.Yellow].Pix[idx])
			case s.rn[idx] > 1.3 && s.rn[idx] < 9:
				nc++
				sums[1] += float64(ch[pipeline.Blue].Pix[idx])
				sums[3] += float64(ch[pipeline.Red].Pix[idx])
				sums[5] += float64(ch[pipeline.Yellow].Pix[idx])
			}
		}
		nucBlue += sums[0] / nn
		cytBlue += sums[1] / nc
		nucRed += sums[2] / nn
		cytRed += sums[3] / nc
		nucYel += sums[4] / nn
		cytYel += sums[5] / nc
		bgRed += sums[6] / max(nb, 1)
	}
	if nucBlue < 3*cytBlue {
		t.Errorf("blue: nucleus %.1f, cytoplasm %.1f", nucBlue/8, cytBlue/8)
	}
	if cytRed < 2*nucRed || cytYel < 2*nucYel {
		t.Errorf("red/yellow not cytoplasmic: red %.1f vs %.1f, yellow %.1f vs %.1f", cytRed/8, nucRed/8, cytYel/8, nucYel/8)
	}
	if cytRed < 2*bgRed {
		t.Errorf("red cytoplasm %.1f, background %.1f", cytRed/8, bgRed/8)
	}
}

func TestComposite(t *testing.T) {
	var ch [4]*image.Gray
	for c := range ch {
		ch[c] = image.NewGray(image.Rect(0, 0, 2, 1))
	}
	ch[pipeline.Red].Pix[0] = 200
	ch[pipeline.Yellow].Pix[0] = 200
	ch[pipeline.Blue].Pix[1] = 50
	ch[pipeline.Green].Pix[1] = 30
	rgb, err := Composite(ch)
	if err != nil {
		t.Fatal(err)
	}
	if got := rgb.RGBAAt(0, 0); got.R != 255 || got.G != 100 || got.B != 0 {
		t.Errorf("pixel 0: %v", got)
	}
	if got := rgb.RGBAAt(1, 0); got.R != 0 || got.G != 30 || got.B != 50 {
		t.Errorf("pixel 1: %v", got)
	}
	ch[2] = image.NewGray(image.Rect(0, 0, 3, 1))
	if _, err := Composite(ch); err == nil {
		t.Error("mismatched sizes accepted")
	}
	ch[2] = nil
	if _, err := Composite(ch); err == nil {
		t.Error("missing channel accepted")
	}
}

// BenchmarkGenerate200x128 is `hpa synth --samples 200 --size 128`; target: well under 10 s.
func BenchmarkGenerate200x128(b *testing.B) {
	for b.Loop() {
		start := time.Now()
		if _, err := Generate(context.Background(), Options{Out: b.TempDir(), Samples: 200, Size: 128, Seed: 1}); err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		b.ReportMetric(el.Seconds(), "s/dataset")
		b.ReportMetric(el.Seconds()/10, "x_of_10s_target")
	}
}

func BenchmarkRender(b *testing.B) {
	for _, size := range []int{64, 128, 512} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			i := 0
			for b.Loop() {
				Render(1, fmt.Sprint(i), []int{0, 14, 25}, size)
				i++
			}
		})
	}
}
