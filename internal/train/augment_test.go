package train

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func ramp(c, s int) []float32 {
	x := make([]float32, c*s*s)
	for i := range x {
		x[i] = float32(i%997) / 997
	}
	return x
}

func TestAugmentFlipsCoverDihedralGroup(t *testing.T) {
	// With rot90 and both flips on, the spatial part reaches all 8 symmetries of the square.
	const c, s = 1, 5
	seen := map[string]bool{}
	for e := 0; e < 200; e++ {
		x := ramp(c, s)
		Augment{Rot90: true, FlipLR: true, FlipUD: true}.Apply(x, c, s, AugmentRNG(9, e, 0), nil)
		seen[string(f32bytes(x))] = true
	}
	if len(seen) != 8 {
		t.Fatalf("%d distinct outcomes, want 8", len(seen))
	}
	// UD flip alone mirrors rows.
	x := ramp(c, s)
	orig := slices.Clone(x)
	for e := 0; ; e++ {
		copy(x, orig)
		Augment{FlipUD: true}.Apply(x, c, s, AugmentRNG(9, e, 0), nil)
		if !slices.Equal(x, orig) {
			break
		}
	}
	for y := 0; y < s; y++ {
		for xx := 0; xx < s; xx++ {
			if x[y*s+xx] != orig[(s-1-y)*s+xx] {
				t.Fatalf("UD flip wrong at %d,%d", y, xx)
			}
		}
	}
}

func TestAugmentDeterministicAndBounded(t *testing.T) {
	const c, s = 4, 32
	a := RecipeAugment()
	a.RotateDeg = 15
	x1, x2 := ramp(c, s), ramp(c, s)
	a.Apply(x1, c, s, AugmentRNG(1, 2, 3), nil)
	a.Apply(x2, c, s, AugmentRNG(1, 2, 3), nil)
	if !slices.Equal(x1, x2) {
		t.Fatal("same (seed, epoch, example) must give the same augmentation")
	}
	x3 := ramp(c, s)
	a.Apply(x3, c, s, AugmentRNG(1, 2, 4), nil)
	if slices.Equal(x1, x3) {
		t.Error("different examples got identical augmentation")
	}
	for _, v := range x1 {
		if v < 0 || v > 1 || math.IsNaN(float64(v)) {
			t.Fatalf("value out of [0,1]: %v", v)
		}
	}
}

func TestAugmentOpsIndividually(t *testing.T) {
	const c, s = 1, 16
	r := rand.New(rand.NewPCG(1, 1))
	// Brightness only: every pixel shifts by the same amount (no clipping for mid-range values).
	x := make([]float32, s*s)
	for i := range x {
		x[i] = 0.5
	}
	Augment{Brightness: 0.2}.Apply(x, c, s, r, nil)
	for _, v := range x {
		if v != x[0] || v == 0.5 {
			t.Fatalf("brightness: %v vs %v", v, x[0])
		}
	}
	// Contrast only keeps the mean.
	x = ramp(c, s)
	for i := range x {
		x[i] = 0.25 + x[i]/2
	}
	var m0, m1 float64
	for _, v := range x {
		m0 += float64(v)
	}
	Augment{Contrast: 0.3}.Apply(x, c, s, r, nil)
	for _, v := range x {
		m1 += float64(v)
	}
	if math.Abs(m0-m1) > 1e-3 {
		t.Errorf("contrast changed the mean: %v -> %v", m0, m1)
	}
	// Erase zeroes a rectangle of 2-20% of the area.
	x = make([]float32, s*s)
	for i := range x {
		x[i] = 1
	}
	Augment{EraseProb: 1}.Apply(x, c, s, r, nil)
	zeros := 0
	for _, v := range x {
		if v == 0 {
			zeros++
		}
	}
	if zeros == 0 || zeros > s*s/4 {
		t.Errorf("erase zeroed %d of %d", zeros, s*s)
	}
	// Expand shrinks the content: a full-white image gets a zero border somewhere.
	x = make([]float32, s*s)
	for i := range x {
		x[i] = 1
	}
	Augment{Expand: 2, ExpandProb: 1}.Apply(x, c, s, r, nil)
	zeros = 0
	for _, v := range x {
		if v == 0 {
			zeros++
		}
	}
	if zeros == 0 {
		t.Error("expand left no canvas")
	}
}

func f32bytes(x []float32) []byte {
	b := make([]byte, 0, 4*len(x))
	for _, v := range x {
		u := math.Float32bits(v)
		b = append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	return b
}
