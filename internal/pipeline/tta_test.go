package pipeline

import (
	"math/rand"
	"slices"
	"testing"
)

func randTensor(c, s int, seed int64) []float32 {
	r := rand.New(rand.NewSource(seed))
	t := make([]float32, c*s*s)
	for i := range t {
		t[i] = r.Float32()
	}
	return t
}

func view(t *testing.T, src []float32, c, s, v int) []float32 {
	t.Helper()
	dst := make([]float32, len(src))
	if err := ApplyView(dst, src, c, s, v); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Reference operations written independently of viewSource.
func refRot90(src []float32, c, s int) []float32 {
	out := make([]float32, len(src))
	for ch := 0; ch < c; ch++ {
		for y := 0; y < s; y++ {
			for x := 0; x < s; x++ {
				out[ch*s*s+y*s+x] = src[ch*s*s+x*s+(s-1-y)]
			}
		}
	}
	return out
}

func refFlipLR(src []float32, c, s int) []float32 {
	out := make([]float32, len(src))
	for ch := 0; ch < c; ch++ {
		for y := 0; y < s; y++ {
			for x := 0; x < s; x++ {
				out[ch*s*s+y*s+x] = src[ch*s*s+y*s+(s-1-x)]
			}
		}
	}
	return out
}

func refFlipUD(src []float32, c, s int) []float32 {
	out := make([]float32, len(src))
	for ch := 0; ch < c; ch++ {
		for y := 0; y < s; y++ {
			copy(out[ch*s*s+y*s:ch*s*s+(y+1)*s], src[ch*s*s+(s-1-y)*s:ch*s*s+(s-y)*s])
		}
	}
	return out
}

func TestViewsHandComputed(t *testing.T) {
	// 1 channel, 2x2: [[1,2],[3,4]]
	src := []float32{1, 2, 3, 4}
	want := map[int][]float32{
		0: {1, 2, 3, 4},
		1: {2, 4, 1, 3}, // np.rot90
		2: {4, 3, 2, 1},
		3: {3, 1, 4, 2},
		4: {2, 1, 4, 3}, // fliplr
		5: {1, 3, 2, 4}, // transpose
		6: {3, 4, 1, 2}, // flipud
		7: {4, 2, 3, 1}, // anti-transpose
	}
	for v, w := range want {
		if got := view(t, src, 1, 2, v); !slices.Equal(got, w) {
			t.Errorf("view %d (%s) = %v, want %v", v, ViewNames[v], got, w)
		}
	}
}

func TestViewsMatchReferenceOps(t *testing.T) {
	for _, s := range []int{1, 2, 5, 8} {
		c := 3
		x := randTensor(c, s, int64(s))
		cur := x
		flipped := refFlipLR(x, c, s)
		curF := flipped
		for k := 0; k < 4; k++ {
			if got := view(t, x, c, s, k); !slices.Equal(got, cur) {
				t.Errorf("s=%d: view %d is not rot90^%d", s, k, k)
			}
			if got := view(t, x, c, s, 4+k); !slices.Equal(got, curF) {
				t.Errorf("s=%d: view %d is not rot90^%d after fliplr", s, 4+k, k)
			}
			cur = refRot90(cur, c, s)
			curF = refRot90(curF, c, s)
		}
		if got := view(t, x, c, s, 6); !slices.Equal(got, refFlipUD(x, c, s)) {
			t.Errorf("s=%d: view 6 is not the UD flip", s)
		}
	}
}

func TestViewsDistinctAndClosed(t *testing.T) {
	const c, s = 2, 7
	x := randTensor(c, s, 42)
	all := make([][]float32, MaxViews)
	for v := range all {
		all[v] = view(t, x, c, s, v)
	}
	for a := 0; a < MaxViews; a++ {
		for b := a + 1; b < MaxViews; b++ {
			if slices.Equal(all[a], all[b]) {
				t.Errorf("views %d and %d are equal", a, b)
			}
		}
	}
	find := func(y []float32) int {
		for v, w := range all {
			if slices.Equal(y, w) {
				return v
			}
		}
		return -1
	}
	for _, n := range []int{1, 2, 4, 8} {
		set, err := ViewSet(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(set) != n {
			t.Fatalf("ViewSet(%d) has %d views", n, len(set))
		}
		for _, a := range set {
			for _, b := range set {
				// b applied after a must again be a view of the same set.
				got := find(view(t, all[a], c, s, b))
				if !slices.Contains(set, got) {
					t.Errorf("%d views: view %d after view %d gives view %d, outside %v", n, b, a, got, set)
				}
			}
		}
	}
}

func TestWriteViews(t *testing.T) {
	const c, s = 4, 6
	x := randTensor(c, s, 7)
	n := c * s * s
	for _, views := range []int{1, 2, 4, 8} {
		dst := make([]float32, views*n)
		if err := WriteViews(dst, x, c, s, views); err != nil {
			t.Fatal(err)
		}
		set, _ := ViewSet(views)
		for j, v := range set {
			if !slices.Equal(dst[j*n:(j+1)*n], view(t, x, c, s, v)) {
				t.Errorf("%d views: slot %d is not view %d", views, j, v)
			}
		}
	}
	if err := WriteViews(make([]float32, 3*n), x, c, s, 3); err == nil {
		t.Error("3 views accepted")
	}
	if err := WriteViews(make([]float32, n), x, c, s, 2); err == nil {
		t.Error("short destination accepted")
	}
	if err := WriteViews(make([]float32, 8*n), x[:n-1], c, s, 8); err == nil {
		t.Error("wrong source size accepted")
	}
	if err := ApplyView(make([]float32, n), x, c, s, 8); err == nil {
		t.Error("view 8 accepted")
	}
}

func BenchmarkWriteViews512(b *testing.B) {
	const c, s = 4, 512
	x := randTensor(c, s, 1)
	dst := make([]float32, 8*c*s*s)
	b.SetBytes(int64(len(dst) * 4))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := WriteViews(dst, x, c, s, 8); err != nil {
			b.Fatal(err)
		}
	}
}
