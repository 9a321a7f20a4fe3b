package synth

import (
	"fmt"
	"image"
	"math"
	"slices"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// greenFeatures describes where and how the green signal of a rendered sample lies, using only
// the four output images (no access to the scene): the counterstains give the nucleus and cell masks.
var featureNames = []string{
	"nuclear", "nuclear rim", "in cells", "corr red", "corr yellow", "top 1%", "autocorr 1", "autocorr 3",
	"coherence", "cell border", "maxima", "perinuclear", "ring-ness",
}

func greenFeatures(ch [4]*image.Gray) []float64 {
	n := ch[0].Rect.Dx()
	N := n * n
	f := func(c pipeline.Channel) []float64 {
		out := make([]float64, N)
		for i, v := range ch[c].Pix {
			out[i] = float64(v)
		}
		return out
	}
	g, r, b, y := f(pipeline.Green), f(pipeline.Red), f(pipeline.Blue), f(pipeline.Yellow)
	// Background-subtract green with its median.
	med := slices.Clone(g)
	slices.Sort(med)
	bg := med[N/2]
	for i := range g {
		g[i] = math.Max(g[i]-bg-4, 0)
	}
	total := 1e-9
	for _, v := range g {
		total += v
	}
	bmax := slices.Max(b)
	nuc := make([]bool, N)
	cellm := make([]bool, N)
	for i := range N {
		nuc[i] = b[i] > 0.3*bmax
		cellm[i] = nuc[i] || r[i]+y[i] > 40
	}
	border := func(m []bool, x, y int) bool {
		if !m[y*n+x] {
			return false
		}
		for _, d := range [4][2]int{{-1, 0}, {1, 0}, {0, -1}, {0, 1}} {
			xx, yy := x+d[0], y+d[1]
			if xx >= 0 && yy >= 0 && xx < n && yy < n && !m[yy*n+xx] {
				return true
			}
		}
		return false
	}
	// dilate the nucleus mask by k pixels (perinuclear band).
	near := slices.Clone(nuc)
	for range 3 {
		nx := slices.Clone(near)
		for yy := range n {
			for xx := range n {
				if near[yy*n+xx] {
					continue
				}
				for _, d := range [4][2]int{{-1, 0}, {1, 0}, {0, -1}, {0, 1}} {
					x2, y2 := xx+d[0], yy+d[1]
					if x2 >= 0 && y2 >= 0 && x2 < n && y2 < n && near[y2*n+x2] {
						nx[yy*n+xx] = true
					}
				}
			}
		}
		near = nx
	}
	var inNuc, rim, inCell, bord, peri float64
	for yy := range n {
		for xx := range n {
			i := yy*n + xx
			v := g[i]
			if nuc[i] {
				inNuc += v
			}
			if border(nuc, xx, yy) {
				rim += v
			}
			if cellm[i] {
				inCell += v
			}
			if border(cellm, xx, yy) {
				bord += v
			}
			if near[i] && !nuc[i] {
				peri += v
			}
		}
	}
	corr := func(a, c []float64) float64 {
		var ma, mc float64
		k := 0
		for i := range N {
			if cellm[i] {
				ma += a[i]
				mc += c[i]
				k++
			}
		}
		if k == 0 {
			return 0
		}
		ma /= float64(k)
		mc /= float64(k)
		var sab, saa, scc float64
		for i := range N {
			if cellm[i] {
				sab += (a[i] - ma) * (c[i] - mc)
				saa += (a[i] - ma) * (a[i] - ma)
				scc += (c[i] - mc) * (c[i] - mc)
			}
		}
		return sab / math.Sqrt(saa*scc+1e-9)
	}
	sorted := slices.Clone(g)
	slices.Sort(sorted)
	var top float64
	for _, v := range sorted[N-N/100:] {
		top += v
	}
	auto := func(lag int) float64 {
		var m float64
		for _, v := range g {
			m += v
		}
		m /= float64(N)
		var num, den float64
		for yy := range n {
			for xx := range n - lag {
				num += (g[yy*n+xx] - m) * (g[yy*n+xx+lag] - m)
			}
		}
		for _, v := range g {
			den += (v - m) * (v - m)
		}
		return num / (den + 1e-9)
	}
	var jxx, jyy, jxy float64
	for yy := 1; yy < n-1; yy++ {
		for xx := 1; xx < n-1; xx++ {
			gx := g[yy*n+xx+1] - g[yy*n+xx-1]
			gy := g[(yy+1)*n+xx] - g[(yy-1)*n+xx]
			jxx += gx * gx
			jyy += gy * gy
			jxy += gx * gy
		}
	}
	coh := math.Hypot(jxx-jyy, 2*jxy) / (jxx + jyy + 1e-9)
	gmax := slices.Max(g)
	maxima, ringish := 0, 0.0
	for yy := 1; yy < n-1; yy++ {
		for xx := 1; xx < n-1; xx++ {
			v := g[yy*n+xx]
			if v < 0.3*gmax {
				continue
			}
			isMax := true
			for dy := -1; dy <= 1 && isMax; dy++ {
				for dx := -1; dx <= 1; dx++ {
					if (dx != 0 || dy != 0) && g[(yy+dy)*n+xx+dx] > v {
						isMax = false
						break
					}
				}
			}
			if isMax {
				maxima++
			}
		}
	}
	// ring-ness: dim pixels enclosed by bright ones at distance 2 (hollow rings).
	for yy := 2; yy < n-2; yy++ {
		for xx := 2; xx < n-2; xx++ {
			c := g[yy*n+xx]
			m := math.Min(math.Min(g[yy*n+xx-2], g[yy*n+xx+2]), math.Min(g[(yy-2)*n+xx], g[(yy+2)*n+xx]))
			if m > 0.3*gmax && c < 0.6*m {
				ringish++
			}
		}
	}
	return []float64{
		inNuc / total, rim / total, inCell / total, corr(g, r), corr(g, y), top / total, auto(1), auto(3),
		coh, bord / total, float64(maxima) / float64(N) * 1000, peri / total, ringish / float64(N) * 1000,
	}
}

// TestClassPatternsDiffer renders samples carrying a single class and checks that every pair of
// classes differs measurably in at least one green-image feature (Cohen's d >= 1), and that a
// nearest-centroid classifier on these features, trained and tested on separate renders, is far
// above chance (1/28).
func TestClassPatternsDiffer(t *testing.T) {
	const k, size = 10, 80
	nf := len(featureNames)
	feats := make([][][]float64, labels.NumClasses) // class -> sample -> feature
	for c := range labels.NumClasses {
		for i := range 2 * k {
			feats[c] = append(feats[c], greenFeatures(Render(11, fmt.Sprintf("c%d-%d", c, i), []int{c}, size)))
		}
	}
	stats := func(c, f, from, to int) (m, sd float64) {
		for i := from; i < to; i++ {
			m += feats[c][i][f]
		}
		m /= float64(to - from)
		for i := from; i < to; i++ {
			d := feats[c][i][f] - m
			sd += d * d
		}
		return m, math.Sqrt(sd / float64(to-from-1))
	}
	minD := math.Inf(1)
	for a := range labels.NumClasses {
		for b := a + 1; b < labels.NumClasses; b++ {
			best, bestF := 0.0, 0
			for f := range nf {
				ma, sa := stats(a, f, 0, 2*k)
				mb, sb := stats(b, f, 0, 2*k)
				d := math.Abs(ma-mb) / math.Sqrt((sa*sa+sb*sb)/2+1e-12)
				if d > best {
					best, bestF = d, f
				}
			}
			minD = math.Min(minD, best)
			if best < 1 {
				t.Errorf("%s vs %s: largest effect size %.2f (%s), want >= 1", labels.ClassNames[a], labels.ClassNames[b], best, featureNames[bestF])
			}
		}
	}
	// Nearest centroid on standardised features: centroids from the first k renders, tested on the rest.
	mu := make([]float64, nf)
	sd := make([]float64, nf)
	for f := range nf {
		var all []float64
		for c := range labels.NumClasses {
			for i := range k {
				all = append(all, feats[c][i][f])
			}
		}
		for _, v := range all {
			mu[f] += v
		}
		mu[f] /= float64(len(all))
		for _, v := range all {
			sd[f] += (v - mu[f]) * (v - mu[f])
		}
		sd[f] = math.Sqrt(sd[f]/float64(len(all))) + 1e-9
	}
	cent := make([][]float64, labels.NumClasses)
	for c := range cent {
		cent[c] = make([]float64, nf)
		for f := range nf {
			m, _ := stats(c, f, 0, k)
			cent[c][f] = (m - mu[f]) / sd[f]
		}
	}
	correct := 0
	for c := range labels.NumClasses {
		for i := k; i < 2*k; i++ {
			best, arg := math.Inf(1), -1
			for c2 := range cent {
				d := 0.0
				for f := range nf {
					z := (feats[c][i][f]-mu[f])/sd[f] - cent[c2][f]
					d += z * z
				}
				if d < best {
					best, arg = d, c2
				}
			}
			if arg == c {
				correct++
			}
		}
	}
	acc := float64(correct) / float64(labels.NumClasses*k)
	t.Logf("smallest pairwise effect size %.2f; nearest-centroid accuracy %.2f (chance %.3f)", minD, acc, 1.0/labels.NumClasses)
	if acc < 0.5 {
		t.Errorf("nearest-centroid accuracy %.2f, want >= 0.5", acc)
	}
}
