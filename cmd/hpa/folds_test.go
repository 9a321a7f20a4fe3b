package main

import (
	"errors"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/train/folds"
)

// foldsFixture writes a labels file of n samples and, when withImages, 64x64 green/blue PNGs for
// each; sample dupOf[i] = j makes sample i a brightened, noised copy of sample j's images.
func foldsFixture(t *testing.T, n int, dupOf map[int]int) (labels, images string, ids []string) {
	t.Helper()
	dir := t.TempDir()
	images = filepath.Join(dir, "img")
	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(42, 1))
	var sb strings.Builder
	sb.WriteString("Id,Target\n")
	for i := range n {
		id := fmt.Sprintf("s%03d", i)
		ids = append(ids, id)
		cls := []int{rng.IntN(4)}
		if rng.IntN(3) == 0 {
			cls = append(cls, 4+rng.IntN(3))
		}
		target := ""
		for k, c := range cls {
			if k > 0 {
				target += " "
			}
			target += fmt.Sprint(c)
		}
		if j, ok := dupOf[i]; ok { // same labels as the original, as real duplicates have
			target = strings.Split(strings.Split(sb.String(), ids[j]+",")[1], "\n")[0]
		}
		fmt.Fprintf(&sb, "%s,%s\n", id, target)
		for c, ch := range []string{"green", "blue"} {
			seed, add := uint64(10*i+c), 0
			if j, ok := dupOf[i]; ok {
				seed, add = uint64(10*j+c), 6
			}
			writeBlobPNG(t, filepath.Join(images, id+"_"+ch+".png"), seed, add)
		}
	}
	labels = filepath.Join(dir, "train.csv")
	if err := os.WriteFile(labels, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return labels, images, ids
}

// writeBlobPNG writes a 64x64 8-bit gray PNG of a few bright disks (pattern fixed by seed), plus add
// and a little noise.
func writeBlobPNG(t *testing.T, path string, seed uint64, add int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	type disk struct{ x, y, r, v int }
	var ds []disk
	for range 5 {
		ds = append(ds, disk{rng.IntN(64), rng.IntN(64), 5 + rng.IntN(10), 90 + rng.IntN(140)})
	}
	noise := rand.New(rand.NewPCG(seed, uint64(add)))
	img := image.NewGray(image.Rect(0, 0, 64, 64))
	for y := range 64 {
		for x := range 64 {
			v := 12
			for _, d := range ds {
				if (x-d.x)*(x-d.x)+(y-d.y)*(y-d.y) < d.r*d.r {
					v = max(v, d.v)
				}
			}
			if add > 0 {
				v += add + noise.IntN(5) - 2
			}
			img.Pix[y*64+x] = uint8(min(255, max(0, v)))
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFoldsCommandKeepsDuplicatesTogether(t *testing.T) {
	dups := map[int]int{7: 3, 20: 11, 21: 11}
	labels, images, ids := foldsFixture(t, 30, dups)
	out := filepath.Join(t.TempDir(), "sub", "folds.csv")
	stdout, err := runCLI(t, "folds", "--labels", labels, "--images", images, "--k", "3", "--seed", "5", "--out", out, "--max-hamming", "6", "--workers", "2")
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if !strings.Contains(stdout, "hashed 30 samples") || !strings.Contains(stdout, "2 near-duplicate groups (max Hamming 6) hold 5 samples") {
		t.Errorf("summary: %s", stdout)
	}
	if !strings.Contains(stdout, "fold sizes (ideal 10.0)") || !strings.Contains(stdout, "Nucleoplasm") {
		t.Errorf("balance table missing: %s", stdout)
	}
	byID, err := folds.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(byID) != len(ids) {
		t.Fatalf("%d rows, want %d", len(byID), len(ids))
	}
	sizes := make([]int, 3)
	for _, id := range ids {
		f, ok := byID[id]
		if !ok || f < 0 || f > 2 {
			t.Fatalf("%s: fold %d (%v)", id, f, ok)
		}
		sizes[f]++
	}
	for i, j := range dups {
		if byID[ids[i]] != byID[ids[j]] {
			t.Errorf("duplicate %s in fold %d, original %s in fold %d", ids[i], byID[ids[i]], ids[j], byID[ids[j]])
		}
	}
	for f, s := range sizes {
		if s < 8 || s > 12 {
			t.Errorf("fold %d has %d of 30 samples", f, s)
		}
	}
	// Same inputs, same seed: same file.
	out2 := filepath.Join(t.TempDir(), "folds.csv")
	if _, err := runCLI(t, "folds", "--labels", labels, "--images", images, "--k", "3", "--seed", "5", "--out", out2); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(out2)
	if string(a) != string(b) {
		t.Error("same seed wrote different folds")
	}
}

func TestFoldsCommandLabelsOnlyAndConfig(t *testing.T) {
	labels, _, ids := foldsFixture(t, 25, nil)
	out := filepath.Join(t.TempDir(), "folds.csv")
	t.Setenv("HPA_FOLDS_K", "5")
	cfgFile := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfgFile, []byte("folds:\n  seed: 9\n  k: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, err := runCLI(t, "folds", "--config", cfgFile, "--labels", labels, "--out", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if strings.Contains(stdout, "hashed") || !strings.Contains(stdout, "25 samples from") || !strings.Contains(stdout, "-> 5 folds (seed 9)") {
		t.Errorf("env should set k=5, file seed=9: %s", stdout)
	}
	byID, err := folds.ReadFile(out)
	if err != nil || len(byID) != len(ids) {
		t.Fatalf("%v %v", byID, err)
	}
	for _, f := range byID {
		if f < 0 || f > 4 {
			t.Errorf("fold %d outside 0..4", f)
		}
	}
}

func TestFoldsCommandErrors(t *testing.T) {
	labelFile, images, _ := foldsFixture(t, 6, nil)
	out := filepath.Join(t.TempDir(), "f.csv")
	if _, err := runCLI(t, "folds", "--labels", "", "--out", out); err == nil || !strings.Contains(err.Error(), "--labels is required") {
		t.Errorf("no labels: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	os.WriteFile(bad, []byte("Id,Target\na,1\nb,31\n"), 0o644)
	_, err := runCLI(t, "folds", "--labels", bad, "--out", out)
	var le *labels.CSVError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), bad+":3: Id b: unknown class id 31") {
		t.Errorf("bad labels: %v", err)
	}
	os.Remove(filepath.Join(images, "s004_blue.png"))
	_, err = runCLI(t, "folds", "--labels", labelFile, "--images", images, "--k", "2", "--out", out)
	var he *folds.HashError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "s004_blue.png") {
		t.Errorf("missing image: %v", err)
	}
	_, err = runCLI(t, "folds", "--labels", labelFile, "--k", "7", "--out", out)
	var fe *folds.Error
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "6 examples/groups cannot fill 7 folds") {
		t.Errorf("too many folds: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("failed runs must not leave %s", out)
	}
}
