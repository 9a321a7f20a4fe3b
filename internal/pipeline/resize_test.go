package pipeline

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
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

// boxCase is an integer-factor shrink: a (fx*w) x (fy*h) source to w x h.
type boxCase struct{ w, h, fx, fy int }

var boxCases = []boxCase{
	{64, 64, 2, 2}, {32, 32, 4, 4}, {16, 16, 8, 8}, {21, 21, 3, 3}, // factors 2, 4, 8, 3
	{33, 25, 3, 3}, {31, 17, 2, 2}, {13, 11, 4, 4}, {7, 9, 8, 8}, // odd output sizes
	{29, 23, 2, 3}, {19, 31, 3, 2}, {15, 13, 5, 7}, {11, 9, 6, 6}, // mixed, non-power-of-two areas
	{45, 37, 1, 3}, {37, 45, 3, 1}, {40, 33, 1, 4}, {33, 40, 4, 1}, {5, 3, 16, 12}, // one axis kept
	{3, 2, 2, 128}, {5, 3, 4, 64}, {3, 5, 8, 32}, {2, 3, 8, 64}, {6, 7, 2, 1}, {5, 5, 4, 1}, // lane-capacity edges
}

// fillers give random images, tie-heavy ones (two adjacent levels, so many block sums land on an
// exact x.5 mean for even areas) and saturated ones (0/255 only).
var fillers = map[string]func(r *rand.Rand) uint8{
	"uniform":   func(r *rand.Rand) uint8 { return uint8(r.IntN(256)) },
	"two-level": func(r *rand.Rand) uint8 { return uint8(100 + r.IntN(2)) },
	"dark":      func(r *rand.Rand) uint8 { return uint8(r.IntN(4)) },
	"saturated": func(r *rand.Rand) uint8 { return uint8(255 * r.IntN(2)) },
}

func randomPlane(r *rand.Rand, w, h int, fill func(*rand.Rand) uint8) Plane {
	p := Plane{W: w, H: h, Pix: make([]uint8, w*h)}
	for i := range p.Pix {
		p.Pix[i] = fill(r)
	}
	return p
}

// The integer box path must give exactly the bytes of the general float path, ties included.
func TestResizeBoxMatchesGeneral(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 11))
	redoTotal := map[bool]int{}
	for _, c := range boxCases {
		sw, sh := c.fx*c.w, c.fy*c.h
		fx, fy, ok := boxFactors(sw, sh, c.w, c.h)
		if !ok || fx != c.fx || fy != c.fy {
			t.Fatalf("%+v: boxFactors = %d, %d, %v", c, fx, fy, ok)
		}
		for name, fill := range fillers {
			for rep := 0; rep < 3; rep++ {
				p := randomPlane(r, sw, sh, fill)
				got, redo := resizeBox(p, c.w, c.h, fx, fy)
				want := resizeGeneral(p, c.w, c.h)
				if got.W != want.W || got.H != want.H {
					t.Fatalf("%+v %s: size %dx%d, want %dx%d", c, name, got.W, got.H, want.W, want.H)
				}
				for i := range want.Pix {
					if got.Pix[i] != want.Pix[i] {
						t.Fatalf("%+v %s: pixel (%d,%d) = %d, general path %d", c, name, i%c.w, i/c.w, got.Pix[i], want.Pix[i])
					}
				}
				if q := Resize(p, c.w, c.h); !bytes.Equal(q.Pix, want.Pix) {
					t.Fatalf("%+v %s: Resize differs from the general path", c, name)
				}
				n := fx * fy
				if n&(n-1) == 0 && redo != 0 {
					t.Fatalf("%+v: power-of-two area recomputed %d pixels in float", c, redo)
				}
				redoTotal[n&(n-1) == 0] += redo
			}
		}
	}
	// The two-level images of the 2x3 and 6x6 cases are full of exact ties: the float recompute
	// must have run (otherwise this test compares nothing interesting for those areas).
	if redoTotal[false] == 0 {
		t.Fatal("no pixel took the float recompute path")
	}
}

// Exact block means: rounding to nearest with ties up is what the float path gives for
// power-of-two areas, so the box path must match the integer formula exactly there.
func TestResizeBoxPowerOfTwoIsRoundHalfUp(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, c := range []boxCase{{16, 8, 2, 4}, {8, 8, 8, 8}, {9, 7, 4, 2}, {4, 4, 32, 32}} {
		p := randomPlane(r, c.fx*c.w, c.fy*c.h, fillers["two-level"])
		q := Resize(p, c.w, c.h)
		n := c.fx * c.fy
		for y := 0; y < c.h; y++ {
			for x := 0; x < c.w; x++ {
				sum := 0
				for dy := 0; dy < c.fy; dy++ {
					for dx := 0; dx < c.fx; dx++ {
						sum += int(p.Pix[(c.fy*y+dy)*p.W+c.fx*x+dx])
					}
				}
				if want := uint8((sum + n/2) / n); q.Pix[y*c.w+x] != want {
					t.Fatalf("%+v (%d,%d) = %d, want %d", c, x, y, q.Pix[y*c.w+x], want)
				}
			}
		}
	}
}

func TestBoxFactors(t *testing.T) {
	for _, c := range []struct {
		sw, sh, dw, dh, fx, fy int
		ok                     bool
	}{
		{512, 512, 128, 128, 4, 4, true},
		{512, 384, 256, 128, 2, 3, true},
		{512, 512, 512, 256, 1, 2, true},
		{512, 512, 300, 300, 0, 0, false}, // not a divisor
		{100, 100, 200, 50, 0, 0, false},  // one axis grows
		{513, 512, 171, 256, 3, 2, true},  // odd source
		{512, 512, 1, 1, 0, 0, false},     // area 2^18 > maxBoxArea: general path
		{256, 128, 1, 1, 256, 128, true},  // area 2^15
		{10, 10, 0, 5, 0, 0, false},       // empty target
	} {
		fx, fy, ok := boxFactors(c.sw, c.sh, c.dw, c.dh)
		if fx != c.fx || fy != c.fy || ok != c.ok {
			t.Errorf("boxFactors(%d,%d,%d,%d) = %d,%d,%v want %d,%d,%v", c.sw, c.sh, c.dw, c.dh, fx, fy, ok, c.fx, c.fy, c.ok)
		}
	}
	// Extreme factors still agree with the general path (the edge of maxBoxArea, and beyond it).
	r := rand.New(rand.NewPCG(9, 9))
	for _, sz := range [][4]int{{256, 128, 1, 1}, {512, 512, 1, 1}, {384, 3, 1, 1}} {
		p := randomPlane(r, sz[0], sz[1], fillers["uniform"])
		if got, want := Resize(p, sz[2], sz[3]), resizeGeneral(p, sz[2], sz[3]); !bytes.Equal(got.Pix, want.Pix) {
			t.Fatalf("%v: %v, general %v", sz, got.Pix, want.Pix)
		}
	}
}

// resizeReference is Resize as it was before the integer box path and the four-row horizontal
// pass (commit 2ced7bd), kept verbatim: Resize must reproduce its bytes on every input.
func resizeReference(p Plane, w, h int) Plane {
	if w <= 0 || h <= 0 || p.W <= 0 || p.H <= 0 || len(p.Pix) < p.W*p.H {
		return Plane{}
	}
	if w == p.W && h == p.H {
		return Plane{W: w, H: h, Pix: append([]uint8(nil), p.Pix[:w*h]...)}
	}
	xw := axisWeights(p.W, w)
	yw := axisWeights(p.H, h)
	// Horizontal pass: p.H x w floats.
	tmp := make([]float32, p.H*w)
	for y := 0; y < p.H; y++ {
		row := p.Pix[y*p.W : (y+1)*p.W]
		t := tmp[y*w : (y+1)*w]
		for x := 0; x < w; x++ {
			var s float32
			for k := xw.off[x]; k < xw.off[x+1]; k++ {
				s += xw.wt[k] * float32(row[xw.idx[k]])
			}
			t[x] = s
		}
	}
	// Vertical pass, accumulating whole rows for locality.
	out := make([]uint8, w*h)
	acc := make([]float32, w)
	for y := 0; y < h; y++ {
		clear(acc)
		for k := yw.off[y]; k < yw.off[y+1]; k++ {
			wt := yw.wt[k]
			src := tmp[int(yw.idx[k])*w : int(yw.idx[k]+1)*w]
			for x, v := range src {
				acc[x] += wt * v
			}
		}
		o := out[y*w : (y+1)*w]
		for x, v := range acc {
			v += 0.5
			switch {
			case v <= 0:
				o[x] = 0
			case v >= 255:
				o[x] = 255
			default:
				o[x] = uint8(v)
			}
		}
	}
	return Plane{W: w, H: h, Pix: out}
}

// Resize is byte-identical to the original implementation on random sizes: shrinking, growing,
// mixed axes, integer and non-integer factors, random and tie-heavy content.
func TestResizeMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 4))
	sizes := [][4]int{{512, 512, 300, 300}, {512, 512, 128, 128}, {37, 23, 64, 9}, {9, 64, 37, 23}, {100, 37, 37, 100},
		{5, 7, 3, 5}, {64, 64, 63, 65}, {96, 48, 32, 48}, {2, 1, 4, 1}, {1, 2, 1, 4}, {7, 7, 1, 1}, {3, 5, 7, 3}}
	for i := 0; i < 40; i++ {
		sizes = append(sizes, [4]int{1 + r.IntN(90), 1 + r.IntN(90), 1 + r.IntN(90), 1 + r.IntN(90)})
	}
	for _, sz := range sizes {
		for name, fill := range fillers {
			p := randomPlane(r, sz[0], sz[1], fill)
			got, want := Resize(p, sz[2], sz[3]), resizeReference(p, sz[2], sz[3])
			if got.W != want.W || got.H != want.H || !bytes.Equal(got.Pix, want.Pix) {
				t.Fatalf("%v %s: Resize differs from the original implementation", sz, name)
			}
		}
	}
}

// BenchmarkResize times Resize on a random 512 px plane against the original implementation
// (resizeReference) on the same input; speedup = original ns / Resize ns.
func BenchmarkResize(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range [][4]int{{512, 512, 128, 128}, {512, 512, 256, 256}, {512, 512, 64, 64}, {510, 510, 170, 170}, {512, 512, 300, 300}, {512, 512, 224, 224}, {128, 128, 300, 300}} {
		p := randomPlane(r, c[0], c[1], fillers["uniform"])
		b.Run(fmt.Sprintf("%dto%d", c[0], c[2]), func(b *testing.B) {
			var fast, orig time.Duration
			for b.Loop() {
				t0 := time.Now()
				Resize(p, c[2], c[3])
				t1 := time.Now()
				resizeReference(p, c[2], c[3])
				fast, orig = fast+t1.Sub(t0), orig+time.Since(t1)
			}
			b.ReportMetric(float64(fast.Nanoseconds())/float64(b.N), "resize-ns/op")
			b.ReportMetric(float64(orig.Nanoseconds())/float64(b.N), "original-ns/op")
			b.ReportMetric(float64(orig)/float64(fast), "speedup")
		})
	}
}

// FuzzResizeMatchesReference: any source (pixels from the fuzzer) and target size gives the
// original implementation's bytes.
func FuzzResizeMatchesReference(f *testing.F) {
	f.Add(uint8(12), uint8(9), uint8(4), uint8(3), []byte{1, 2, 3, 200, 255, 0, 7})
	f.Add(uint8(64), uint8(64), uint8(16), uint8(16), []byte{100, 101})
	f.Add(uint8(30), uint8(30), uint8(10), uint8(15), []byte{255})
	f.Add(uint8(5), uint8(3), uint8(11), uint8(2), []byte{0, 255, 128})
	f.Fuzz(func(t *testing.T, sw, sh, dw, dh uint8, seed []byte) {
		if sw == 0 || sh == 0 || dw == 0 || dh == 0 || len(seed) == 0 {
			return
		}
		p := Plane{W: int(sw), H: int(sh), Pix: make([]uint8, int(sw)*int(sh))}
		for i := range p.Pix {
			p.Pix[i] = seed[i%len(seed)] + uint8(i/len(seed))
		}
		got, want := Resize(p, int(dw), int(dh)), resizeReference(p, int(dw), int(dh))
		if got.W != want.W || got.H != want.H || !bytes.Equal(got.Pix, want.Pix) {
			t.Fatalf("%dx%d -> %dx%d: Resize differs from the original implementation", sw, sh, dw, dh)
		}
	})
}
