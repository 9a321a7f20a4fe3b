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

func TestDihedralGroup(t *testing.T) {
	const c, s = 2, 5
	src := ramp(c, s)
	seen := map[string]bool{}
	dst := make([]float32, len(src))
	for k := 0; k < 4; k++ {
		for _, lr := range []bool{false, true} {
			Dihedral(dst, src, c, s, k, lr, false)
			seen[string(f32bytes(dst))] = true
		}
	}
	if len(seen) != 8 {
		t.Fatalf("%d distinct views, want 8", len(seen))
	}
	// rot90 four times is the identity; LR+UD flip equals rot180.
	a, b := slices.Clone(src), make([]float32, len(src))
	for range 4 {
		Dihedral(b, a, c, s, 1, false, false)
		a, b = b, a
	}
	if !slices.Equal(a, src) {
		t.Error("rot90^4 != identity")
	}
	Dihedral(a, src, c, s, 0, true, true)
	Dihedral(b, src, c, s, 2, false, false)
	if !slices.Equal(a, b) {
		t.Error("LR+UD != rot180")
	}
	// A counter-clockwise quarter turn moves the top-right pixel to the top-left.
	Dihedral(a, src, 1, s, 1, false, false)
	if a[0] != src[s-1] {
		t.Errorf("rot90 direction: got %v want %v", a[0], src[s-1])
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

func TestAugmentDeterministicAndBounded(t *testing.T) {
	const c, s = 4, 32
	a := DefaultAugment()
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
