package synth

import (
	"math"
	"slices"
)

// pt is a point in pixel coordinates (pixel (x, y) covers [x, x+1) x [y, y+1)).
type pt struct{ x, y float64 }

func (p pt) add(q pt) pt         { return pt{p.x + q.x, p.y + q.y} }
func (p pt) sub(q pt) pt         { return pt{p.x - q.x, p.y - q.y} }
func (p pt) mul(k float64) pt    { return pt{p.x * k, p.y * k} }
func (p pt) norm() float64       { return math.Hypot(p.x, p.y) }
func polar(r, a float64) pt      { return pt{r * math.Cos(a), r * math.Sin(a)} }
func lerp(a, b pt, t float64) pt { return pt{a.x + (b.x-a.x)*t, a.y + (b.y-a.y)*t} }

func clamp(v, lo, hi float64) float64 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

// expNeg(t) approximates exp(-t) for t >= 0 from a table (linear interpolation, error < 2e-6),
// the hot path of every stamp.
func expNeg(t float64) float64 {
	if t >= expMax {
		return 0
	}
	if t < 0 {
		return math.Exp(-t)
	}
	f := t * expScale
	i := int(f)
	return expTab[i] + (expTab[i+1]-expTab[i])*(f-float64(i))
}

const (
	expMax   = 16.0
	expN     = 8192
	expScale = expN / expMax
)

var expTab = func() (t [expN + 2]float64) {
	for i := range t {
		t[i] = math.Exp(-float64(i) / expScale)
	}
	return t
}()

// smoothstep is 0 below e0, 1 above e1, smooth in between (e0 > e1 reverses it).
func smoothstep(e0, e1, x float64) float64 {
	t := clamp((x-e0)/(e1-e0), 0, 1)
	return t * t * (3 - 2*t)
}

// maskMode restricts where a stamp may paint.
type maskMode uint8

const (
	anywhere maskMode = iota // the whole image
	inCell                   // pixels owned by the cell
	inCyto                   // the cell's cytoplasm (owned, outside its nucleus)
	inNuc                    // the cell's nucleus
)

// allowed reports whether pixel idx may be painted for cell ci under mode m.
func (s *scene) allowed(idx, ci int, m maskMode) bool {
	switch m {
	case inCell:
		return int(s.owner[idx]) == ci
	case inCyto:
		return int(s.owner[idx]) == ci && s.rn[idx] >= 1
	case inNuc:
		return int(s.owner[idx]) == ci && s.rn[idx] < 1
	}
	return true
}

// stamp adds a Gaussian spot of peak amp and standard deviation sigma (pixels) at p.
func (s *scene) stamp(dst []float32, p pt, sigma, amp float64, ci int, m maskMode) {
	n := s.n
	rad := 2.5 * sigma
	x0, x1 := int(math.Floor(p.x-rad)), int(math.Ceil(p.x+rad))
	y0, y1 := int(math.Floor(p.y-rad)), int(math.Ceil(p.y+rad))
	x0, y0 = max(x0, 0), max(y0, 0)
	x1, y1 = min(x1, n-1), min(y1, n-1)
	k := 1 / (2 * sigma * sigma)
	for y := y0; y <= y1; y++ {
		dy := float64(y) + 0.5 - p.y
		for x := x0; x <= x1; x++ {
			dx := float64(x) + 0.5 - p.x
			d2 := dx*dx + dy*dy
			if d2 > rad*rad {
				continue
			}
			idx := y*n + x
			if m != anywhere && !s.allowed(idx, ci, m) {
				continue
			}
			dst[idx] += float32(amp * expNeg(d2*k))
		}
	}
}

// line adds a Gaussian-profile line of peak amp from a to b.
func (s *scene) line(dst []float32, a, b pt, sigma, amp float64, ci int, m maskMode) {
	l := b.sub(a).norm()
	step := 0.6 * sigma
	steps := max(1, int(math.Ceil(l/step)))
	step = l / float64(steps)
	per := amp * step / (math.Sqrt(2*math.Pi) * sigma)
	if l == 0 {
		per = amp
	}
	for i := 0; i <= steps; i++ {
		w := per
		if i == 0 || i == steps {
			w *= 0.5
		}
		s.stamp(dst, lerp(a, b, float64(i)/float64(steps)), sigma, w, ci, m)
	}
}

// path draws a polyline.
func (s *scene) path(dst []float32, p []pt, sigma, amp float64, ci int, m maskMode) {
	for i := 1; i < len(p); i++ {
		s.line(dst, p[i-1], p[i], sigma, amp, ci, m)
	}
}

// ring adds a hollow circle of radius r.
func (s *scene) ring(dst []float32, c pt, r, sigma, amp float64, ci int, m maskMode) {
	steps := max(8, int(math.Ceil(2*math.Pi*r/(0.6*sigma))))
	per := amp * (2 * math.Pi * r / float64(steps)) / (math.Sqrt(2*math.Pi) * sigma)
	for i := range steps {
		a := 2 * math.Pi * float64(i) / float64(steps)
		s.stamp(dst, c.add(polar(r, a)), sigma, per, ci, m)
	}
}

// valueNoise is smooth lattice noise in [0, 1) with features about spacing pixels apart.
func valueNoise(r *rng, n int, spacing float64) []float32 {
	spacing = math.Max(spacing, 1)
	g := int(math.Ceil(float64(n)/spacing)) + 2
	lat := make([]float32, g*g)
	for i := range lat {
		lat[i] = float32(r.float())
	}
	out := make([]float32, n*n)
	for y := range n {
		fy := (float64(y) + 0.5) / spacing
		iy := int(fy)
		ty := float32(smoothstep(0, 1, fy-float64(iy)))
		for x := range n {
			fx := (float64(x) + 0.5) / spacing
			ix := int(fx)
			tx := float32(smoothstep(0, 1, fx-float64(ix)))
			a := lat[iy*g+ix] + (lat[iy*g+ix+1]-lat[iy*g+ix])*tx
			b := lat[(iy+1)*g+ix] + (lat[(iy+1)*g+ix+1]-lat[(iy+1)*g+ix])*tx
			out[y*n+x] = a + (b-a)*ty
		}
	}
	return out
}

// reticular is a polygonal network (Worley F2-F1 edges) in [0, 1]: 1 on the network's tubules.
func reticular(r *rng, n int, spacing, width float64) []float32 {
	spacing = math.Max(spacing, 2)
	g := int(math.Ceil(float64(n)/spacing)) + 2
	feat := make([]pt, g*g)
	for i := range feat {
		gx, gy := float64(i%g)-1, float64(i/g)-1
		feat[i] = pt{(gx + r.float()) * spacing, (gy + r.float()) * spacing}
	}
	out := make([]float32, n*n)
	for y := range n {
		py := float64(y) + 0.5
		cy := int(py/spacing) + 1
		for x := range n {
			px := float64(x) + 0.5
			cx := int(px/spacing) + 1
			f1, f2 := math.Inf(1), math.Inf(1)
			for j := cy - 1; j <= cy+1; j++ {
				for i := cx - 1; i <= cx+1; i++ {
					if i < 0 || j < 0 || i >= g || j >= g {
						continue
					}
					q := feat[j*g+i]
					d := (q.x-px)*(q.x-px) + (q.y-py)*(q.y-py)
					if d < f1 {
						f1, f2 = d, f1
					} else if d < f2 {
						f2 = d
					}
				}
			}
			out[y*n+x] = float32(expNeg((math.Sqrt(f2) - math.Sqrt(f1)) / width))
		}
	}
	return out
}

// quantile returns approximately the q-quantile of v (histogram with 4096 bins), and the maximum.
func quantile(v []float32, q float64) (float64, float64) {
	var hi float32
	for _, x := range v {
		hi = max(hi, x)
	}
	if hi <= 0 {
		return 0, 0
	}
	const bins = 4096
	var h [bins]int
	scale := float32(bins-1) / hi
	for _, x := range v {
		if x > 0 {
			h[int(x*scale)]++
		} else {
			h[0]++
		}
	}
	target := int(math.Ceil(q * float64(len(v))))
	acc := 0
	for i, c := range h {
		acc += c
		if acc >= target {
			return float64(i+1) / float64(scale), float64(hi)
		}
	}
	return float64(hi), float64(hi)
}

// sortedUnique returns the valid class ids of labels, sorted, without duplicates.
func sortedUnique(labels []int, numClasses int) []int {
	out := make([]int, 0, len(labels))
	for _, c := range labels {
		if c >= 0 && c < numClasses {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
