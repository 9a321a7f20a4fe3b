package synth

import (
	"math"
	"testing"
)

func TestRNGStreams(t *testing.T) {
	// Fixed seeds give fixed streams (the datasets' reproducibility rests on it).
	a, b := newRNG(1), newRNG(1)
	for range 100 {
		if a.uint64() != b.uint64() {
			t.Fatal("same seed, different streams")
		}
	}
	if newRNGFor(1, "a").uint64() == newRNGFor(1, "b").uint64() || newRNGFor(1, "a").uint64() == newRNGFor(2, "a").uint64() {
		t.Error("keys or seeds do not separate streams")
	}
	r := newRNG(7)
	var hist [7]int
	const n = 70000
	var sum, sum2, fsum, fsum2 float64
	for range n {
		hist[r.intn(7)]++
		x := r.norm()
		sum += x
		sum2 += x * x
		y := r.fastNorm()
		fsum += y
		fsum2 += y * y
		if u := r.float(); u < 0 || u >= 1 {
			t.Fatalf("float %v outside [0,1)", u)
		}
	}
	for i, h := range hist {
		if math.Abs(float64(h)-n/7) > 5*math.Sqrt(n/7) {
			t.Errorf("intn(7) bucket %d: %d of %d", i, h, n)
		}
	}
	for name, m := range map[string][2]float64{"norm": {sum, sum2}, "fastNorm": {fsum, fsum2}} {
		mean, v := m[0]/n, m[1]/n-(m[0]/n)*(m[0]/n)
		if math.Abs(mean) > 0.02 || math.Abs(v-1) > 0.03 {
			t.Errorf("%s: mean %.4f variance %.4f", name, mean, v)
		}
	}
	if r.intn(0) != 0 || r.irange(5, 5) != 5 {
		t.Error("degenerate ranges")
	}
}

func TestExpNeg(t *testing.T) {
	for x := 0.0; x < 20; x += 0.0137 {
		if d := math.Abs(expNeg(x) - math.Exp(-x)); d > 2e-6 {
			t.Fatalf("expNeg(%v) off by %g", x, d)
		}
	}
}
