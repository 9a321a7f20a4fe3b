package pipeline

import (
	"bytes"
	"testing"
)

func rampPlane(w, h int) Plane {
	p := Plane{W: w, H: h, Pix: make([]uint8, w*h)}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p.Pix[y*w+x] = uint8((x*37 + y*11 + x*y) % 256)
		}
	}
	return p
}

func TestResizeIdentityIsCopy(t *testing.T) {
	p := rampPlane(64, 48)
	q := Resize(p, 64, 48)
	if q.W != 64 || q.H != 48 || !bytes.Equal(q.Pix, p.Pix) {
		t.Fatal("identity resize changed pixels")
	}
	q.Pix[0]++
	if p.Pix[0] == q.Pix[0] {
		t.Fatal("identity resize shares the source buffer")
	}
}

func TestResizeAreaIntegerFactor(t *testing.T) {
	p := rampPlane(128, 96)
	q := Resize(p, 64, 32) // 2x horizontally, 3x vertically
	for y := 0; y < 32; y++ {
		for x := 0; x < 64; x++ {
			sum := 0
			for dy := 0; dy < 3; dy++ {
				for dx := 0; dx < 2; dx++ {
					sum += int(p.Pix[(3*y+dy)*128+2*x+dx])
				}
			}
			want := uint8((sum + 3) / 6) // round(sum/6), ties up
			tie := sum%6 == 3            // float weights may round an exact tie either way
			if d := int(want) - int(q.Pix[y*64+x]); d != 0 && !(tie && d == 1) {
				t.Fatalf("(%d,%d) = %d, want block mean %d", x, y, q.Pix[y*64+x], want)
			}
		}
	}
}

func TestResizeAreaFractional(t *testing.T) {
	// 3 -> 2: output 0 covers src 0 and half of src 1; output 1 the other half and src 2.
	p := Plane{W: 3, H: 1, Pix: []uint8{30, 90, 150}}
	q := Resize(p, 2, 1)
	if q.Pix[0] != 50 || q.Pix[1] != 130 { // (30 + 45)/1.5, (45 + 150)/1.5
		t.Fatalf("got %v", q.Pix)
	}
}

func TestResizeBilinearGrow(t *testing.T) {
	p := Plane{W: 2, H: 1, Pix: []uint8{0, 100}}
	q := Resize(p, 4, 1)
	// centres at -0.25, 0.25, 0.75, 1.25 in source pixels, clamped at the edges.
	if want := []uint8{0, 25, 75, 100}; !bytes.Equal(q.Pix, want) {
		t.Fatalf("got %v want %v", q.Pix, want)
	}
	v := Resize(Plane{W: 1, H: 2, Pix: []uint8{200, 0}}, 1, 4)
	if want := []uint8{200, 150, 50, 0}; !bytes.Equal(v.Pix, want) {
		t.Fatalf("vertical got %v want %v", v.Pix, want)
	}
}

func TestResizeConstantAndMixed(t *testing.T) {
	c := Plane{W: 100, H: 37, Pix: bytes.Repeat([]uint8{173}, 100*37)}
	for _, sz := range [][2]int{{37, 100}, {64, 64}, {200, 20}, {1, 1}, {333, 111}} {
		q := Resize(c, sz[0], sz[1])
		if q.W != sz[0] || q.H != sz[1] || len(q.Pix) != sz[0]*sz[1] {
			t.Fatalf("size %dx%d", q.W, q.H)
		}
		for i, v := range q.Pix {
			if v != 173 {
				t.Fatalf("%v: pixel %d = %d, constant image must stay constant", sz, i, v)
			}
		}
	}
	// Whole-image mean is preserved by area shrinking (up to rounding).
	p := rampPlane(120, 90)
	q := Resize(p, 40, 30)
	if d := mean(p.Pix) - mean(q.Pix); d > 0.6 || d < -0.6 {
		t.Fatalf("mean changed by %.2f", d)
	}
}

func mean(b []uint8) float64 {
	s := 0
	for _, v := range b {
		s += int(v)
	}
	return float64(s) / float64(len(b))
}

func TestResizeBadSizes(t *testing.T) {
	p := rampPlane(8, 8)
	for _, q := range []Plane{Resize(p, 0, 8), Resize(p, 8, -1), Resize(Plane{}, 4, 4), Resize(Plane{W: 8, H: 8, Pix: make([]uint8, 10)}, 4, 4)} {
		if q.W != 0 || q.H != 0 || q.Pix != nil {
			t.Fatalf("want zero plane, got %dx%d", q.W, q.H)
		}
	}
}

func BenchmarkResize512to256(b *testing.B) {
	p := rampPlane(512, 512)
	for b.Loop() {
		Resize(p, 256, 256)
	}
}
