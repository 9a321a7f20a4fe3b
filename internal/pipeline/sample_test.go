package pipeline

import (
	"bytes"
	"image"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/hpa-plates/hpa/internal/testenv"
)

func TestParseName(t *testing.T) {
	cases := []struct {
		in  string
		id  string
		ch  Channel
		ext string
		ok  bool
	}{
		{"00070df0-bbc3-11e8-b2bc-ac1f6b6435d0_green.png", "00070df0-bbc3-11e8-b2bc-ac1f6b6435d0", Green, "png", true},
		{"a_b_red.tif", "a_b", Red, "tif", true},
		{"x_blue.TIFF", "x", Blue, "tiff", true},
		{"x_yellow.jpg", "x", Yellow, "jpg", true},
		{"x_yellow.jpeg", "x", Yellow, "jpeg", true},
		{"x_Red.png", "", 0, "", false},
		{"_red.png", "", 0, "", false},
		{"red.png", "", 0, "", false},
		{"x_red.gif", "", 0, "", false},
		{"x_red", "", 0, "", false},
		{"x_purple.png", "", 0, "", false},
		{"train.csv", "", 0, "", false},
	}
	for _, c := range cases {
		id, ch, ext, ok := ParseName(c.in)
		if id != c.id || ch != c.ch || ext != c.ext || ok != c.ok {
			t.Errorf("ParseName(%q) = %q %v %q %v, want %q %v %q %v", c.in, id, ch, ext, ok, c.id, c.ch, c.ext, c.ok)
		}
	}
}

// realChannelFiles copies four real HPA PNGs into dir as the channels of sample id (the real
// sample has one channel per Id, so the four come from different Ids) and returns their bytes.
func realChannelFiles(t *testing.T, dir, id string) [4][]byte {
	t.Helper()
	files := realPNGs(t)
	var out [4][]byte
	for c := 0; c < 4; c++ {
		data, err := os.ReadFile(files[c*7])
		if err != nil {
			t.Fatal(err)
		}
		out[c] = data
		if err := os.WriteFile(filepath.Join(dir, id+"_"+ChannelNames[c]+".png"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestScanDirAndLoadSample(t *testing.T) {
	dir := t.TempDir()
	datas := realChannelFiles(t, dir, "s2")
	realChannelFiles(t, dir, "s1")
	// Incomplete: s3 has red and blue only; noise files and a directory are ignored.
	for _, n := range []string{"s3_red.png", "s3_blue.png"} {
		os.WriteFile(filepath.Join(dir, n), datas[0], 0o644)
	}
	for _, n := range []string{"README.md", "s4_purple.png", "s5_red.gif", "train.csv"} {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644)
	}
	os.Mkdir(filepath.Join(dir, "s6_red.png"), 0o755)

	complete, incomplete, err := ScanDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(complete) != 2 || complete[0].ID != "s1" || complete[1].ID != "s2" {
		t.Fatalf("complete = %+v", complete)
	}
	for c, f := range complete[1].Files {
		if f != filepath.Join(dir, "s2_"+ChannelNames[c]+".png") {
			t.Fatalf("files = %v", complete[1].Files)
		}
	}
	wantInc := []Incomplete{{ID: "s3", Missing: []Channel{Green, Yellow},
		Present: []string{filepath.Join(dir, "s3_red.png"), filepath.Join(dir, "s3_blue.png")}}}
	if !reflect.DeepEqual(incomplete, wantInc) {
		t.Fatalf("incomplete = %+v", incomplete)
	}

	img, err := LoadSample("s2", complete[1].Files, DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != "s2" || img.W != 512 || img.H != 512 {
		t.Fatalf("image %s %dx%d", img.ID, img.W, img.H)
	}
	for c := range 4 {
		want, err := DecodeChannel(datas[c], "x", Channel(c), DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(img.Planes[c].Pix, want.Pix) {
			t.Fatalf("plane %d differs from its file", c)
		}
	}

	// Missing channel (empty path), file that vanished, unreadable path, size mismatch.
	files := complete[1].Files
	files[Blue] = ""
	_, err = LoadSample("s2", files, DecodeOptions{})
	wantKind(t, err, KindMissingChannel, "s2")

	files = complete[1].Files
	files[Green] = filepath.Join(dir, "gone_green.png")
	_, err = LoadSample("s2", files, DecodeOptions{})
	wantKind(t, err, KindMissingChannel, files[Green])

	files = complete[1].Files
	files[Yellow] = filepath.Join(dir, "s6_red.png") // a directory
	_, err = LoadSample("s2", files, DecodeOptions{})
	wantKind(t, err, KindIO, files[Yellow])

	small := image.NewGray(image.Rect(0, 0, 64, 64))
	os.WriteFile(filepath.Join(dir, "s1_yellow.png"), encodePNG(t, small), 0o644)
	_, err = LoadSample("s1", complete[0].Files, DecodeOptions{})
	wantKind(t, err, KindSizeMismatch, complete[0].Files[Yellow])

	os.WriteFile(filepath.Join(dir, "s1_green.png"), nil, 0o644)
	_, err = LoadSample("s1", complete[0].Files, DecodeOptions{})
	wantKind(t, err, KindEmpty, complete[0].Files[Green])

	if _, err := LoadSample("s2", complete[1].Files, DecodeOptions{YellowFrom: "x"}); err == nil {
		t.Fatal("bad options accepted")
	}
}

func TestScanDirErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a_red.png"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "a_red.tif"), []byte("x"), 0o644)
	_, _, err := ScanDir(dir)
	wantKind(t, err, KindDuplicate, "")

	_, _, err = ScanDir(filepath.Join(dir, "nope"))
	wantKind(t, err, KindIO, filepath.Join(dir, "nope"))

	c, inc, err := ScanDir(t.TempDir())
	if err != nil || len(c) != 0 || len(inc) != 0 {
		t.Fatalf("empty dir: %v %v %v", c, inc, err)
	}
}

// TestDecodeConcurrent decodes real files from many goroutines (run with -race): the shared
// libdeflate decompressor list must hand each decompressor to one goroutine at a time.
func TestDecodeConcurrent(t *testing.T) {
	files := realPNGs(t)[:16]
	want := make([][]byte, len(files))
	datas := make([][]byte, len(files))
	for i, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		datas[i] = d
		p, err := DecodeChannel(d, f, Red, DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want[i] = p.Pix
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < len(files); k++ {
				i := (k + g) % len(files)
				p, err := DecodeChannel(datas[i], files[i], Red, DecodeOptions{})
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(p.Pix, want[i]) {
					errs <- &InputError{File: files[i], Kind: KindCorrupt, Reason: "concurrent decode differs"}
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestScanDirReal: the real sample directory holds one channel per Id, so every Id is incomplete
// with three channels missing, and the list is sorted.
func TestScanDirReal(t *testing.T) {
	dir := filepath.Join(testenv.HPAFixture(t), "train_sample")
	pngs, err := filepath.Glob(filepath.Join(dir, "*.png"))
	if err != nil || len(pngs) < 20 {
		t.Fatalf("%s: %d PNGs (%v)", dir, len(pngs), err)
	}
	complete, incomplete, err := ScanDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(complete) != 0 || len(incomplete) != len(pngs) {
		t.Fatalf("%d complete, %d incomplete; want 0 and %d", len(complete), len(incomplete), len(pngs))
	}
	for i, inc := range incomplete {
		if i > 0 && incomplete[i-1].ID >= inc.ID {
			t.Fatalf("not sorted at %d", i)
		}
		if len(inc.Missing) != 3 || len(inc.Present) != 1 {
			t.Fatalf("%s: missing %v present %v", inc.ID, inc.Missing, inc.Present)
		}
		id, ch, _, ok := ParseName(filepath.Base(inc.Present[0]))
		if !ok || id != inc.ID {
			t.Fatalf("present file %s does not belong to %s", inc.Present[0], inc.ID)
		}
		for _, m := range inc.Missing {
			if m == ch {
				t.Fatalf("%s: present channel %s listed as missing", inc.ID, ch)
			}
		}
	}
}
