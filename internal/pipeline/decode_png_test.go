package pipeline

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/hpa-plates/hpa/internal/testenv"
)

// realPNGs lists the 40 real HPA PNGs of the committed fixture (testdata/hpa-real).
func realPNGs(t testing.TB) []string {
	t.Helper()
	return realPNGsIn(t, testenv.HPAFixture(t), 40)
}

// realPNGsIn lists the PNGs of root's train_sample and test_sample, at least min of them.
func realPNGsIn(t testing.TB, root string, min int) []string {
	t.Helper()
	var files []string
	for _, sub := range []string{"train_sample", "test_sample"} {
		m, err := filepath.Glob(filepath.Join(root, sub, "*.png"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < min {
		t.Fatalf("want %d real PNGs under %s, found %d", min, root, len(files))
	}
	return files
}

func channelOf(t testing.TB, path string) Channel {
	_, ch, _, ok := ParseName(filepath.Base(path))
	if !ok {
		t.Fatalf("unexpected name %s", path)
	}
	return ch
}

// TestFastPNGIdenticalToImagePNG is the correctness half of the issue: on every real HPA PNG the
// fast path (libdeflate + C unfilter) must give exactly image/png's pixels.
func TestFastPNGIdenticalToImagePNG(t *testing.T) {
	fastPNGIdentical(t, realPNGs(t))
}

// TestFastPNGIdenticalAllReal: the same on all 400 real PNGs of ../shared/hpa-real.
func TestFastPNGIdenticalAllReal(t *testing.T) {
	fastPNGIdentical(t, realPNGsIn(t, testenv.HPAReal(t), 400))
}

func fastPNGIdentical(t *testing.T, files []string) {
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := parsePNGHeader(data, f, DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !hdr.fast() {
			t.Fatalf("%s: expected an 8-bit gray non-interlaced PNG, got depth %d color type %d interlace %d", f, hdr.depth, hdr.colorType, hdr.interlace)
		}
		got, err := DecodeChannel(data, f, channelOf(t, f), DecodeOptions{})
		if err != nil {
			t.Fatalf("DecodeChannel: %v", err)
		}
		ref, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		g, ok := ref.(*image.Gray)
		if !ok {
			t.Fatalf("%s: image/png gave %T", f, ref)
		}
		if got.W != g.Rect.Dx() || got.H != g.Rect.Dy() || len(got.Pix) != got.W*got.H {
			t.Fatalf("%s: size %dx%d (len %d), image/png %v", f, got.W, got.H, len(got.Pix), g.Rect)
		}
		if !bytes.Equal(got.Pix, g.Pix) {
			t.Fatalf("%s: pixels differ from image/png", f)
		}
	}
}

// encodePNG writes img with image/png (which picks filters adaptively, so all five filter types
// occur in textured images).
func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestFastPNGFiltersAndSizes exercises the unfilter on odd widths, 1-pixel images and 16-bit.
func TestFastPNGFiltersAndSizes(t *testing.T) {
	for _, sz := range [][2]int{{1, 1}, {1, 7}, {7, 1}, {3, 5}, {65, 33}, {128, 96}} {
		w, h := sz[0], sz[1]
		g := image.NewGray(image.Rect(0, 0, w, h))
		g16 := image.NewGray16(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				v := uint8((x*x*7 + y*13 + (x^y)*31) % 251)
				g.Pix[y*w+x] = v
				g16.SetGray16(x, y, colorGray16(uint16(x*977+y*4099+int(v)*131)))
			}
		}
		p, err := DecodeChannel(encodePNG(t, g), "g8.png", Green, DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p.Pix, g.Pix) || p.W != w || p.H != h {
			t.Fatalf("%dx%d gray8: pixels differ", w, h)
		}
		p16, err := DecodeChannel(encodePNG(t, g16), "g16.png", Green, DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < w*h; i++ {
			v := uint32(g16.Pix[2*i])<<8 | uint32(g16.Pix[2*i+1])
			if want := uint8((v*255 + 32767) / 65535); p16.Pix[i] != want {
				t.Fatalf("%dx%d gray16 pixel %d: v=%d got %d want %d", w, h, i, v, p16.Pix[i], want)
			}
		}
	}
}

func TestPaethExhaustive(t *testing.T) {
	if n := paethSelfTest(); n != 0 {
		t.Fatalf("fast Paeth predictor differs from the reference on %d of 2^24 inputs", n)
	}
}

func TestScale16(t *testing.T) {
	for _, c := range []struct {
		in   uint16
		want uint8
	}{{0, 0}, {65535, 255}, {128, 0}, {129, 1}, {257 * 100, 100}, {32767, 127}, {32768, 128}, {65278, 254}} {
		if got := scale16(c.in); got != c.want {
			t.Errorf("scale16(%d) = %d, want %d", c.in, got, c.want)
		}
	}
	for v := 0; v < 256; v++ {
		if got := scale16(uint16(v * 257)); got != uint8(v) {
			t.Fatalf("scale16(%d*257) = %d", v, got)
		}
	}
}

// BenchmarkDecodePNG512 decodes the 40 real 512x512 HPA PNGs of the fixture (testdata/hpa-real);
// every result line reports how many images it decoded ("images").
func BenchmarkDecodePNG512(b *testing.B) {
	files := realPNGs(b)
	datas := make([][]byte, len(files))
	var total int64
	for i, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		datas[i] = d
		total += int64(len(d))
	}
	fast := func() {
		for _, d := range datas {
			if _, err := DecodeChannel(d, "x_green.png", Green, DecodeOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	std := func() {
		for _, d := range datas {
			if _, err := png.Decode(bytes.NewReader(d)); err != nil {
				b.Fatal(err)
			}
		}
	}
	perImage := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(datas))/1e6, "ms/image")
		b.ReportMetric(float64(len(datas)), "images")
	}
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			fast()
		}
		perImage(b)
	})
	b.Run("imagepng", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			std()
		}
		perImage(b)
	})
	// ratio alternates the two decoders on the same images within one benchmark, so both see the
	// same machine load, and reports image/png time / fast time.
	b.Run("ratio", func(b *testing.B) {
		var tf, ts int64
		for b.Loop() {
			t0 := nowNanos()
			fast()
			t1 := nowNanos()
			std()
			tf += t1 - t0
			ts += nowNanos() - t1
		}
		b.ReportMetric(float64(ts)/float64(tf), "x_vs_imagepng")
		b.ReportMetric(float64(len(datas)), "images")
	})
	// ratio_cpu is the same on the CPU time of the (locked) thread, i.e. per core, unaffected by
	// waiting for a core on a shared machine. Linux only.
	b.Run("ratio_cpu", func(b *testing.B) {
		if _, ok := threadCPUNanos(); !ok {
			b.Skip("no per-thread CPU clock on this platform")
		}
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var tf, ts int64
		for b.Loop() {
			t0, _ := threadCPUNanos()
			fast()
			t1, _ := threadCPUNanos()
			std()
			t2, _ := threadCPUNanos()
			tf += t1 - t0
			ts += t2 - t1
		}
		b.ReportMetric(float64(ts)/float64(tf), "x_vs_imagepng")
		b.ReportMetric(float64(len(datas)), "images")
		b.ReportMetric(float64(tf)/float64(b.N*len(datas))/1e6, "fast_cpu_ms/image")
		b.ReportMetric(float64(ts)/float64(b.N*len(datas))/1e6, "imagepng_cpu_ms/image")
	})
}
