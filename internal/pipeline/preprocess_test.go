package pipeline

import (
	"errors"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/testenv"
)

func constPlane(w, h int, v uint8) Plane {
	p := Plane{W: w, H: h, Pix: make([]uint8, w*h)}
	for i := range p.Pix {
		p.Pix[i] = v
	}
	return p
}

func TestParseChannelOrder(t *testing.T) {
	got, err := ParseChannelOrder([]string{"green", "red", "yellow", "blue"})
	if err != nil || !slices.Equal(got, []Channel{Green, Red, Yellow, Blue}) {
		t.Errorf("%v %v", got, err)
	}
	var pe *PreprocessError
	if _, err := ParseChannelOrder([]string{"red", "cyan"}); !errors.As(err, &pe) || !strings.Contains(err.Error(), "cyan") {
		t.Errorf("cyan: %v", err)
	}
	if _, err := ParseChannelOrder(nil); !errors.As(err, &pe) {
		t.Errorf("empty: %v", err)
	}
}

func TestToCHWHandComputed(t *testing.T) {
	img := Image4{ID: "s", W: 2, H: 2}
	img.Planes[Red] = Plane{W: 2, H: 2, Pix: []uint8{0, 255, 51, 102}}
	img.Planes[Green] = constPlane(2, 2, 1)
	img.Planes[Blue] = Plane{W: 2, H: 2, Pix: []uint8{255, 0, 0, 255}}
	img.Planes[Yellow] = constPlane(2, 2, 3)
	norm := Norm{Mean: []float32{0.5, 0}, Std: []float32{0.25, 0.5}}
	dst := make([]float32, 8)
	if err := ToCHW(img, 2, []Channel{Red, Blue}, norm, dst); err != nil {
		t.Fatal(err)
	}
	// red: (p/255 - 0.5)/0.25: 0 -> -2, 255 -> 2, 51 -> -1.2, 102 -> -0.4
	// blue: (p/255)/0.5: 255 -> 2, 0 -> 0
	want := []float32{-2, 2, -1.2, -0.4, 2, 0, 0, 2}
	for i := range want {
		if math.Abs(float64(dst[i]-want[i])) > 1e-6 {
			t.Errorf("dst[%d] = %v, want %v", i, dst[i], want[i])
		}
	}
}

func TestToCHWResizes(t *testing.T) {
	img := Image4{ID: "big", W: 96, H: 96}
	for c := range img.Planes {
		img.Planes[c] = constPlane(96, 96, uint8(40*c+10))
	}
	order := []Channel{Red, Green, Blue, Yellow}
	norm := Norm{Mean: []float32{0, 0, 0, 0}, Std: []float32{1, 1, 1, 1}}
	const size = 64
	dst := make([]float32, CHWSize(order, size))
	if err := ToCHW(img, size, order, norm, dst); err != nil {
		t.Fatal(err)
	}
	for c := range order {
		want := float32(40*c+10) / 255
		for j, v := range dst[c*size*size : (c+1)*size*size] {
			if math.Abs(float64(v-want)) > 1e-6 {
				t.Fatalf("channel %d pixel %d = %v, want %v (a constant plane stays constant)", c, j, v, want)
			}
		}
	}
}

func TestToCHWErrors(t *testing.T) {
	img := Image4{ID: "bad", W: 4, H: 4}
	for c := range img.Planes {
		img.Planes[c] = constPlane(4, 4, 9)
	}
	order := []Channel{Red, Green}
	norm := Norm{Mean: []float32{0, 0}, Std: []float32{1, 1}}
	ok := make([]float32, 32)
	short := img
	short.Planes[Green] = Plane{W: 4, H: 4, Pix: make([]uint8, 15)}
	cases := map[string]error{
		"size 0":      ToCHW(img, 0, order, norm, ok),
		"short dst":   ToCHW(img, 4, order, norm, ok[:31]),
		"norm length": ToCHW(img, 4, order, Norm{Mean: []float32{0}, Std: []float32{1}}, ok),
		"zero std":    ToCHW(img, 4, order, Norm{Mean: []float32{0, 0}, Std: []float32{1, 0}}, ok),
		"nan mean":    ToCHW(img, 4, order, Norm{Mean: []float32{float32(math.NaN()), 0}, Std: []float32{1, 1}}, ok),
		"bad channel": ToCHW(img, 4, []Channel{Red, 7}, norm, ok),
		"short plane": ToCHW(short, 4, order, norm, ok),
		"empty plane": ToCHW(Image4{ID: "e"}, 4, order, norm, ok),
		"empty order": ToCHW(img, 4, nil, Norm{}, ok),
	}
	for name, err := range cases {
		var pe *PreprocessError
		if !errors.As(err, &pe) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// realPlane reads one real HPA channel PNG with the standard library (independent of our decoder).
func realPlane(t testing.TB) Plane {
	t.Helper()
	dir := filepath.Join(testenv.HPAFixture(t), "test_sample")
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		t.Fatalf("read %s: %v", dir, err)
	}
	f, err := os.Open(filepath.Join(dir, ents[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	im, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	g, ok := im.(*image.Gray)
	if !ok {
		t.Fatalf("%s is %T, want 8-bit gray", ents[0].Name(), im)
	}
	b := g.Bounds()
	p := Plane{W: b.Dx(), H: b.Dy(), Pix: make([]uint8, b.Dx()*b.Dy())}
	for y := 0; y < p.H; y++ {
		copy(p.Pix[y*p.W:(y+1)*p.W], g.Pix[y*g.Stride:y*g.Stride+p.W])
	}
	return p
}

func TestToCHWRealImage(t *testing.T) {
	p := realPlane(t)
	img := Image4{ID: "real", W: p.W, H: p.H, Planes: [4]Plane{p, p, p, p}}
	order := []Channel{Green}
	norm := Norm{Mean: []float32{0.08}, Std: []float32{0.13}}
	full := make([]float32, p.W*p.H)
	if err := ToCHW(img, p.W, order, norm, full); err != nil {
		t.Fatal(err)
	}
	var mean float64
	for i, v := range p.Pix {
		want := (float64(v)/255 - 0.08) / 0.13
		if math.Abs(float64(full[i])-want) > 1e-5 {
			t.Fatalf("pixel %d: %v, want %v", i, full[i], want)
		}
		mean += float64(full[i])
	}
	mean /= float64(len(full))
	// Downscaled, the image keeps its mean intensity (any area-preserving resize does, up to rounding).
	const size = 128
	small := make([]float32, size*size)
	if err := ToCHW(img, size, order, norm, small); err != nil {
		t.Fatal(err)
	}
	var ms float64
	for _, v := range small {
		ms += float64(v)
	}
	ms /= float64(len(small))
	if math.Abs(ms-mean) > 2.0/255/0.13 {
		t.Errorf("mean %v at %d px, %v at %d px", ms, size, mean, p.W)
	}
}

func BenchmarkToCHW512(b *testing.B) {
	p := realPlane(b)
	img := Image4{ID: "real", W: p.W, H: p.H, Planes: [4]Plane{p, p, p, p}}
	order := []Channel{Red, Green, Blue, Yellow}
	norm := Norm{Mean: []float32{0.08, 0.08, 0.08, 0.08}, Std: []float32{0.13, 0.13, 0.13, 0.13}}
	dst := make([]float32, CHWSize(order, p.W))
	b.SetBytes(int64(4 * len(p.Pix)))
	for i := 0; i < b.N; i++ {
		if err := ToCHW(img, p.W, order, norm, dst); err != nil {
			b.Fatal(err)
		}
	}
}

func TestNormApplyFloatMatchesToCHW(t *testing.T) {
	const s = 4
	img := Image4{ID: "x", W: s, H: s}
	for c := range img.Planes {
		pix := make([]uint8, s*s)
		for i := range pix {
			pix[i] = uint8(i*17 + c*40)
		}
		img.Planes[c] = Plane{W: s, H: s, Pix: pix}
	}
	order := []Channel{Red, Green, Blue, Yellow}
	norm := Norm{Mean: []float32{0.1, 0.2, 0.3, 0.4}, Std: []float32{0.5, 0.25, 0.2, 0.1}}
	want := make([]float32, CHWSize(order, s))
	if err := ToCHW(img, s, order, norm, want); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(want))
	for c, ch := range order {
		for i, p := range img.Planes[ch].Pix {
			got[c*s*s+i] = float32(p) / 255
		}
	}
	if err := norm.ApplyFloat(got, 4, s); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if d := got[i] - want[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("value %d: %v vs ToCHW %v", i, got[i], want[i])
		}
	}
	if err := norm.ApplyFloat(got[:5], 4, s); err == nil {
		t.Error("wrong size must fail")
	}
}
