package folds

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"math/bits"
	"sort"

	"github.com/hpa-plates/hpa/internal/pipeline"
)

// GrayPlane is an 8-bit grayscale image: W x H pixels, row-major, stride W (pipeline.Plane).
type GrayPlane = pipeline.Plane

// HashError is an image that cannot be hashed.
type HashError struct {
	Name   string // the image (file or sample Id) when known
	Reason string
}

func (e *HashError) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("phash %s: %s", e.Name, e.Reason)
	}
	return "phash: " + e.Reason
}

// GrayFromImage converts any image to a GrayPlane (an *image.Gray is copied row by row; other
// types go through color.GrayModel).
func GrayFromImage(img image.Image) GrayPlane {
	b := img.Bounds()
	p := GrayPlane{W: b.Dx(), H: b.Dy(), Pix: make([]uint8, b.Dx()*b.Dy())}
	if g, ok := img.(*image.Gray); ok {
		for y := 0; y < p.H; y++ {
			off := g.PixOffset(b.Min.X, b.Min.Y+y)
			copy(p.Pix[y*p.W:(y+1)*p.W], g.Pix[off:off+p.W])
		}
		return p
	}
	for y := 0; y < p.H; y++ {
		for x := 0; x < p.W; x++ {
			p.Pix[y*p.W+x] = color.GrayModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y
		}
	}
	return p
}

const (
	phashSize = 32 // the image is reduced to phashSize x phashSize before the DCT
	phashLow  = 8  // phashLow x phashLow low frequencies make the 64 bits
)

// dctCos[u][x] = cos((2x+1) u pi / 64), the DCT-II basis for 32 samples.
var dctCos = func() (c [phashLow + 1][phashSize]float64) {
	for u := range c {
		for x := range phashSize {
			c[u][x] = math.Cos(float64(2*x+1) * float64(u) * math.Pi / (2 * phashSize))
		}
	}
	return c
}()

// PHash is the DCT perceptual hash of a gray image: the image is reduced to 32x32 by area
// averaging, transformed with a 2-D DCT-II, and the 8x8 lowest frequencies after the DC term
// (u, v = 1..8, as in the pHash library; the DC term only carries the mean brightness) are compared
// with their median: bit 8*(u-1)+(v-1) is set when the coefficient is above the median. Brightness
// offsets leave the hash unchanged; mild noise, blur and contrast changes flip few bits. Compare
// hashes with Hamming.
func PHash(p GrayPlane) (uint64, error) {
	if p.W <= 0 || p.H <= 0 {
		return 0, &HashError{Reason: fmt.Sprintf("empty image %dx%d", p.W, p.H)}
	}
	if len(p.Pix) != p.W*p.H {
		return 0, &HashError{Reason: fmt.Sprintf("%d pixels for a %dx%d image", len(p.Pix), p.W, p.H)}
	}
	small := reduce32(p)
	// Rows first: r[y][v] = sum_x small[y][x] cos_v(x), for v = 0..8; then columns.
	var r [phashSize][phashLow + 1]float64
	for y := range phashSize {
		row := small[y*phashSize : (y+1)*phashSize]
		for v := 1; v <= phashLow; v++ {
			s := 0.0
			for x, px := range row {
				s += px * dctCos[v][x]
			}
			r[y][v] = s
		}
	}
	var coef [phashLow * phashLow]float64
	for u := 1; u <= phashLow; u++ {
		for v := 1; v <= phashLow; v++ {
			s := 0.0
			for y := range phashSize {
				s += r[y][v] * dctCos[u][y]
			}
			coef[(u-1)*phashLow+(v-1)] = s
		}
	}
	sorted := coef
	sort.Float64s(sorted[:])
	median := (sorted[31] + sorted[32]) / 2
	var h uint64
	for i, c := range coef {
		if c > median {
			h |= 1 << uint(i)
		}
	}
	return h, nil
}

// reduce32 averages the image down to 32x32: output cell (X, Y) is the mean of the source pixels
// with x*32/W == X and y*32/H == Y (each source pixel belongs to one cell; an image smaller than
// 32 pixels in a direction repeats its pixels instead).
func reduce32(p GrayPlane) []float64 {
	out := make([]float64, phashSize*phashSize)
	if p.W >= phashSize && p.H >= phashSize {
		var sum, cnt [phashSize * phashSize]uint32
		xc := make([]int32, p.W)
		for x := range xc {
			xc[x] = int32(x * phashSize / p.W)
		}
		for y := 0; y < p.H; y++ {
			cells := sum[(y*phashSize/p.H)*phashSize:][:phashSize]
			ns := cnt[(y*phashSize/p.H)*phashSize:][:phashSize]
			row := p.Pix[y*p.W : (y+1)*p.W]
			for x, v := range row {
				cells[xc[x]] += uint32(v)
				ns[xc[x]]++
			}
		}
		for i := range out {
			out[i] = float64(sum[i]) / float64(cnt[i])
		}
		return out
	}
	// Small images: every output cell averages the source pixels its area covers (at least one).
	for Y := range phashSize {
		y0, y1 := Y*p.H/phashSize, max(Y*p.H/phashSize+1, (Y+1)*p.H/phashSize)
		for X := range phashSize {
			x0, x1 := X*p.W/phashSize, max(X*p.W/phashSize+1, (X+1)*p.W/phashSize)
			s, n := 0.0, 0.0
			for y := y0; y < y1; y++ {
				for x := x0; x < x1; x++ {
					s += float64(p.Pix[y*p.W+x])
					n++
				}
			}
			out[Y*phashSize+X] = s / n
		}
	}
	return out
}

// Hamming is the number of differing bits of two hashes.
func Hamming(a, b uint64) int { return bits.OnesCount64(a ^ b) }

// GroupByHash puts hashes within maxHamming bits of each other into one group, transitively
// (union-find), and returns a group id per hash: 0, 1, 2, ... in order of first appearance. A
// negative maxHamming groups nothing (every hash alone).
//
// Candidate pairs come from a multi-index: the 64 bits are cut into maxHamming+1 bands, and two
// hashes within maxHamming bits agree exactly on at least one band (pigeonhole), so only hashes
// sharing a band value are compared. Exact duplicates are merged first. For maxHamming >= 16 the
// bands are too narrow to help and all pairs are compared.
func GroupByHash(hashes []uint64, maxHamming int) []int {
	n := len(hashes)
	parent := make([]int32, n)
	for i := range parent {
		parent[i] = int32(i)
	}
	find := func(x int32) int32 {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	union := func(a, b int32) {
		ra, rb := find(a), find(b)
		if ra == rb {
			return
		}
		if ra < rb { // the smaller index is the root, so roots are first appearances
			parent[rb] = ra
		} else {
			parent[ra] = rb
		}
	}
	if maxHamming >= 0 {
		// Exact duplicates first; then work on the distinct hashes.
		first := make(map[uint64]int32, n)
		var uniq []int32
		for i, h := range hashes {
			if j, ok := first[h]; ok {
				union(j, int32(i))
				continue
			}
			first[h] = int32(i)
			uniq = append(uniq, int32(i))
		}
		switch {
		case maxHamming == 0:
		case maxHamming >= 16 || len(uniq) < 64:
			for a := range uniq {
				for b := a + 1; b < len(uniq); b++ {
					if Hamming(hashes[uniq[a]], hashes[uniq[b]]) <= maxHamming {
						union(uniq[a], uniq[b])
					}
				}
			}
		default:
			bands := maxHamming + 1
			for b := range bands {
				lo, hi := 64*b/bands, 64*(b+1)/bands
				mask := uint64(1)<<uint(hi-lo) - 1
				buckets := make(map[uint64][]int32)
				for _, i := range uniq {
					key := hashes[i] >> uint(lo) & mask
					buckets[key] = append(buckets[key], i)
				}
				for _, list := range buckets {
					for a := range list {
						for c := a + 1; c < len(list); c++ {
							if find(list[a]) != find(list[c]) && Hamming(hashes[list[a]], hashes[list[c]]) <= maxHamming {
								union(list[a], list[c])
							}
						}
					}
				}
			}
		}
	}
	ids := make([]int, n)
	next := 0
	idOf := make(map[int32]int)
	for i := range n {
		r := find(int32(i))
		id, ok := idOf[r]
		if !ok {
			id = next
			next++
			idOf[r] = id
		}
		ids[i] = id
	}
	return ids
}
