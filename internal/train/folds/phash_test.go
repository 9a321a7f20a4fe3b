package folds

import (
	"errors"
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/testenv"
)

// realPlanes decodes the first n PNGs of the fixture testdata/hpa-real/train_sample whose name ends in suffix.
func realPlanes(t testing.TB, suffix string, n int) ([]GrayPlane, []string) {
	t.Helper()
	dir := filepath.Join(testenv.HPAFixture(t), "train_sample")
	names, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	if len(names) > n {
		names = names[:n]
	}
	if len(names) < 2 {
		t.Fatalf("too few %s images in %s", suffix, dir)
	}
	var planes []GrayPlane
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := img.(*image.Gray); !ok {
			t.Fatalf("%s: %T, want 8-bit gray", name, img)
		}
		planes = append(planes, GrayFromImage(img))
	}
	return planes, names
}

// perturb brightens the plane by add and adds uniform noise of +-noise, clamped to 0..255.
func perturbPlane(p GrayPlane, add, noise int, seed uint64) GrayPlane {
	rng := rand.New(rand.NewPCG(seed, 1))
	q := GrayPlane{W: p.W, H: p.H, Pix: make([]uint8, len(p.Pix))}
	for i, v := range p.Pix {
		x := int(v) + add
		if noise > 0 {
			x += rng.IntN(2*noise+1) - noise
		}
		q.Pix[i] = uint8(min(255, max(0, x)))
	}
	return q
}

func mustPHash(t testing.TB, p GrayPlane) uint64 {
	t.Helper()
	h, err := PHash(p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestPHashRealNearDuplicates(t *testing.T) {
	for _, ch := range []string{"_green.png", "_blue.png", "_red.png"} {
		planes, names := realPlanes(t, ch, 12)
		for i, p := range planes {
			h := mustPHash(t, p)
			q := mustPHash(t, perturbPlane(p, 12, 8, uint64(i)))
			if d := Hamming(h, q); d > 4 {
				t.Errorf("%s: brightened+noised copy is %d bits away", filepath.Base(names[i]), d)
			}
		}
	}
}

func TestPHashRealDistinctImagesFar(t *testing.T) {
	planes, names := realPlanes(t, ".png", 200)
	hashes := make([]uint64, len(planes))
	for i, p := range planes {
		hashes[i] = mustPHash(t, p)
	}
	minD, hist := 64, make([]int, 65)
	for i := range hashes {
		for j := i + 1; j < len(hashes); j++ {
			d := Hamming(hashes[i], hashes[j])
			hist[d]++
			if d < minD {
				minD = d
			}
			if d <= 8 {
				t.Errorf("different images %s and %s are only %d bits apart", filepath.Base(names[i]), filepath.Base(names[j]), d)
			}
		}
	}
	t.Logf("%d images, min pairwise distance %d", len(hashes), minD)
	ids := GroupByHash(hashes, 6)
	for i, id := range ids {
		if id != i {
			t.Fatalf("distinct real images grouped at maxHamming 6: %v", ids[:i+1])
		}
	}
}

func TestPHashBrightnessInvariantAndErrors(t *testing.T) {
	p := GrayPlane{W: 100, H: 70, Pix: make([]uint8, 7000)}
	for y := range p.H {
		for x := range p.W {
			p.Pix[y*p.W+x] = uint8((x*x/40 + y*3 + (x*y)%17) % 200)
		}
	}
	h := mustPHash(t, p)
	if h2 := mustPHash(t, perturbPlane(p, 40, 0, 0)); h2 != h {
		t.Errorf("a brightness offset changed the hash: %016x vs %016x", h, h2)
	}
	// a different pattern is far away
	q := GrayPlane{W: 100, H: 70, Pix: make([]uint8, 7000)}
	for i := range q.Pix {
		q.Pix[i] = uint8((i / 100 * 7) % 256)
	}
	if d := Hamming(h, mustPHash(t, q)); d < 10 {
		t.Errorf("different patterns only %d bits apart", d)
	}
	// small images work (repeated pixels)
	small := GrayPlane{W: 5, H: 3, Pix: []uint8{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 200}}
	mustPHash(t, small)
	for _, bad := range []GrayPlane{{W: 0, H: 5}, {W: 4, H: 4, Pix: make([]uint8, 15)}} {
		_, err := PHash(bad)
		var he *HashError
		if !errors.As(err, &he) {
			t.Errorf("%dx%d with %d pixels: got %v, want HashError", bad.W, bad.H, len(bad.Pix), err)
		}
	}
}

func TestGroupByHashHand(t *testing.T) {
	hashes := []uint64{0, 1, 3, ^uint64(0), 0, 0xF0, ^uint64(1)}
	// maxHamming 1: 0-1-3 chain (3 is 2 bits from 0 but 1 from 1), the duplicate 0 joins;
	// ^0 and ^1 are 1 bit apart; 0xF0 is 4 bits from 0.
	want := []int{0, 0, 0, 1, 0, 2, 1}
	if got := GroupByHash(hashes, 1); !sameInts(got, want) {
		t.Errorf("maxHamming 1: got %v want %v", got, want)
	}
	if got := GroupByHash(hashes, 0); !sameInts(got, []int{0, 1, 2, 3, 0, 4, 5}) {
		t.Errorf("maxHamming 0: got %v", got)
	}
	if got := GroupByHash(hashes, -1); !sameInts(got, []int{0, 1, 2, 3, 4, 5, 6}) {
		t.Errorf("maxHamming -1: got %v", got)
	}
	if got := GroupByHash(hashes, 4); !sameInts(got, []int{0, 0, 0, 1, 0, 0, 1}) {
		t.Errorf("maxHamming 4: got %v", got)
	}
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// bruteGroups is the reference: all pairs, union-find by relabeling.
func bruteHashGroups(hashes []uint64, h int) []int {
	n := len(hashes)
	g := make([]int, n)
	for i := range g {
		g[i] = i
	}
	var root func(int) int
	root = func(x int) int {
		if g[x] != x {
			g[x] = root(g[x])
		}
		return g[x]
	}
	for i := range n {
		for j := i + 1; j < n; j++ {
			if Hamming(hashes[i], hashes[j]) <= h {
				a, b := root(i), root(j)
				g[max(a, b)] = min(a, b)
			}
		}
	}
	ids, m := make([]int, n), map[int]int{}
	for i := range n {
		r := root(i)
		if _, ok := m[r]; !ok {
			m[r] = len(m)
		}
		ids[i] = m[r]
	}
	return ids
}

func TestGroupByHashMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	hashes := make([]uint64, 1500)
	for i := range hashes {
		if i > 0 && rng.IntN(4) == 0 { // a near copy of an earlier hash
			h := hashes[rng.IntN(i)]
			for range rng.IntN(9) {
				h ^= 1 << rng.IntN(64)
			}
			hashes[i] = h
		} else {
			hashes[i] = rng.Uint64()
		}
	}
	for _, h := range []int{0, 1, 2, 3, 5, 8, 12, 20} {
		if got, want := GroupByHash(hashes, h), bruteHashGroups(hashes, h); !sameInts(got, want) {
			t.Errorf("maxHamming %d: multi-index grouping differs from brute force", h)
		}
	}
}

func writeTestGrayPNG(t testing.TB, path string, p GrayPlane) {
	t.Helper()
	img := &image.Gray{Pix: p.Pix, Stride: p.W, Rect: image.Rect(0, 0, p.W, p.H)}
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

// synthPlane is a 64x64 pattern of a few bright blobs, different per seed.
func blobPlane(seed uint64) GrayPlane {
	rng := rand.New(rand.NewPCG(seed, 99))
	p := GrayPlane{W: 64, H: 64, Pix: make([]uint8, 64*64)}
	type blob struct{ x, y, r, v int }
	var bs []blob
	for range 6 {
		bs = append(bs, blob{rng.IntN(64), rng.IntN(64), 4 + rng.IntN(10), 80 + rng.IntN(150)})
	}
	for y := range 64 {
		for x := range 64 {
			v := 10
			for _, b := range bs {
				if (x-b.x)*(x-b.x)+(y-b.y)*(y-b.y) < b.r*b.r {
					v = max(v, b.v)
				}
			}
			p.Pix[y*64+x] = uint8(v)
		}
	}
	return p
}

func TestSampleHashes(t *testing.T) {
	dir := t.TempDir()
	ids := []string{"s0", "s1", "s2", "s3", "s4", "s5"}
	for i, id := range ids {
		for c, ch := range []string{"green", "blue"} {
			p := blobPlane(uint64(10*i + c))
			if id == "s4" { // near-duplicate of s1
				p = perturbPlane(blobPlane(uint64(10*1+c)), 5, 3, uint64(c))
			}
			writeTestGrayPNG(t, filepath.Join(dir, id+"_"+ch+".png"), p)
		}
	}
	hashes, err := SampleHashes(dir, ids, DefaultHashChannels, 3)
	if err != nil {
		t.Fatal(err)
	}
	groups := GroupByHash(hashes, 6)
	if groups[4] != groups[1] {
		t.Errorf("near-duplicate s4 not grouped with s1: %v (distance %d)", groups, Hamming(hashes[1], hashes[4]))
	}
	seen := map[int]bool{}
	for i, g := range groups {
		if i != 4 && seen[g] {
			t.Errorf("distinct samples grouped: %v", groups)
		}
		seen[g] = true
	}
	// errors name the file
	_, err = SampleHashes(dir, []string{"s0", "nope"}, DefaultHashChannels, 2)
	var he *HashError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "nope_green.png") {
		t.Errorf("missing file: %v", err)
	}
	writeTestGrayPNG(t, filepath.Join(dir, "odd_green.png"), blobPlane(1))
	writeTestGrayPNG(t, filepath.Join(dir, "odd_blue.png"), GrayPlane{W: 32, H: 32, Pix: make([]uint8, 1024)})
	if _, err = SampleHashes(dir, []string{"odd"}, DefaultHashChannels, 1); err == nil || !strings.Contains(err.Error(), "odd_blue.png: 32x32") {
		t.Errorf("size mismatch: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "junk_green.png"), []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err = SampleHashes(dir, []string{"junk"}, []string{"green"}, 1); err == nil || !strings.Contains(err.Error(), "junk_green.png: decode PNG") {
		t.Errorf("bad PNG: %v", err)
	}
	if _, err = SampleHashes(dir, ids, []string{"purple"}, 1); err == nil || !strings.Contains(err.Error(), "unknown channel") {
		t.Errorf("bad channel: %v", err)
	}
}

func BenchmarkPHash512(b *testing.B) {
	planes, _ := realPlanes(b, ".png", 4)
	for i := 0; b.Loop(); i++ {
		if _, err := PHash(planes[i%len(planes)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGroupByHash groups 31,072 hashes (a tenth planted near-duplicates) at maxHamming 6 and
// reports the speed-up of the multi-index over comparing all pairs.
func BenchmarkGroupByHash(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	hashes := make([]uint64, 31072)
	for i := range hashes {
		if i > 0 && rng.IntN(10) == 0 {
			hashes[i] = hashes[rng.IntN(i)] ^ 1<<rng.IntN(64) ^ 1<<rng.IntN(64)
		} else {
			hashes[i] = rng.Uint64()
		}
	}
	for b.Loop() {
		GroupByHash(hashes, 6)
	}
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	// maxHamming 16 takes the all-pairs path: the cost the multi-index avoids.
	start := time.Now()
	GroupByHash(hashes, 16)
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/perOp, "speedup_vs_all_pairs")
}
