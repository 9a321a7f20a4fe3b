package synth

import (
	"image"
	"math"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// Render draws one synthetic sample in memory: four size x size 8-bit images indexed by
// pipeline.Channel (red microtubules, green protein, blue nuclei, yellow ER). The result is a pure
// function of (seed, id, labels as a set, size). Labels outside [0, 28) are ignored; size <= 0
// gives four empty images. Use ValidateSample to reject such input with an error instead.
func Render(seed int64, id string, classes []int, size int) [4]*image.Gray {
	var out [4]*image.Gray
	n := max(size, 0)
	for c := range out {
		out[c] = image.NewGray(image.Rect(0, 0, n, n))
	}
	if n == 0 {
		return out
	}
	r := newRNGFor(seed, id)
	var has [labels.NumClasses]bool
	for _, c := range sortedUnique(classes, labels.NumClasses) {
		has[c] = true
	}
	s := newScene(r, n, has)
	s.paint()
	for c := range out {
		s.quantize(pipeline.Channel(c), out[c].Pix)
	}
	return out
}

// cell is one cell of the field: a wobbly disc with an elliptic nucleus.
type cell struct {
	c        pt
	R        float64    // mean radius
	hAmp     [3]float64 // outline harmonics k = 2, 3, 4
	hPh      [3]float64
	n        pt // nucleus centre
	na, nb   float64
	nth      float64 // nucleus orientation
	mitotic  bool    // metaphase: no nucleus, a chromosome plate, a spindle
	plate    float64 // plate orientation (mitotic)
	sister   int     // the other daughter of a cytokinetic pair, or -1
	cs       pt      // centrosome, next to the nucleus
	side     float64 // direction of the perinuclear side where Golgi / centrosome sit
	nucleoli []blob
	mts      [][]pt // microtubules (red)
	x0, y0   int    // bounding box of the owned pixels
	x1, y1   int
	blue     float64 // per-cell stain brightness
	red      float64
	yellow   float64
}

type blob struct {
	p pt
	s float64
}

// radiusAt is the outline radius in direction a.
func (c *cell) radiusAt(a float64) float64 {
	r := 1.0
	for k := range c.hAmp {
		r += c.hAmp[k] * math.Cos(float64(k+2)*a+c.hPh[k])
	}
	return c.R * r
}

// nucRadiusAt is the nucleus radius in direction a (from the nucleus centre).
func (c *cell) nucRadiusAt(a float64) float64 {
	u, v := math.Cos(a-c.nth)/c.na, math.Sin(a-c.nth)/c.nb
	return 1 / math.Sqrt(u*u+v*v)
}

func (c *cell) rhoNuc(p pt) float64 {
	d := p.sub(c.n)
	cs, sn := math.Cos(c.nth), math.Sin(c.nth)
	u := (d.x*cs + d.y*sn) / c.na
	v := (-d.x*sn + d.y*cs) / c.nb
	return math.Sqrt(u*u + v*v)
}

// nucEdge is the point on the nucleus border in direction a, pushed out by off pixels.
func (c *cell) nucEdge(a, off float64) pt {
	return c.n.add(polar(c.nucRadiusAt(a)+off, a))
}

// scene is one sample being drawn.
type scene struct {
	r     *rng
	n     int
	u     float64 // pixels per 1/128 of the image side
	has   [labels.NumClasses]bool
	cells []cell
	owner []int16   // owning cell per pixel, -1 for background
	rc    []float32 // owner's normalised outline distance (1 on the outline)
	rn    []float32 // owner's normalised nucleus distance (1 on the nuclear border; 9 when none)
	edge  []uint8   // 1: cell border pixel, 2: border shared with another cell
	ch    [4][]float32
	erNet []float32
	nucTx []float32
	cytTx []float32
}

func newScene(r *rng, n int, has [labels.NumClasses]bool) *scene {
	s := &scene{r: r, n: n, u: float64(n) / 128, has: has}
	for c := range s.ch {
		s.ch[c] = make([]float32, n*n)
	}
	s.layout()
	s.own()
	s.erNet = reticular(r, n, 4.5*s.u+1, 0.5*s.u+0.35)
	s.nucTx = valueNoise(r, n, 2.2*s.u+0.8)
	s.cytTx = valueNoise(r, n, 7*s.u+1)
	for i := range s.cells {
		s.organelles(i)
	}
	return s
}

// px converts a length in 1/128ths of the image to pixels, never below lo.
func (s *scene) px(v, lo float64) float64 { return math.Max(v*s.u, lo) }

// newCell makes a cell of mean radius R at c.
func (s *scene) newCell(c pt, R float64, round bool) cell {
	r := s.r
	ce := cell{c: c, R: R, sister: -1}
	amp := 0.16
	if round {
		amp = 0.03
	}
	for k := range ce.hAmp {
		ce.hAmp[k] = r.uniform(0, amp) / float64(k+1)
		ce.hPh[k] = r.uniform(0, 2*math.Pi)
	}
	ce.na = R * r.uniform(0.36, 0.48)
	ce.nb = ce.na * r.uniform(0.72, 1)
	ce.nth = r.uniform(0, math.Pi)
	ce.n = c.add(polar(r.uniform(0, 0.12*R), r.uniform(0, 2*math.Pi)))
	ce.side = r.uniform(0, 2*math.Pi)
	ce.blue = r.uniform(0.6, 1)
	ce.red = r.uniform(0.5, 1)
	ce.yellow = r.uniform(0.5, 1)
	return ce
}

// fits reports whether a cell of radius R at c keeps the minimum spacing from all cells.
func (s *scene) fits(c pt, R, k float64) bool {
	for i := range s.cells {
		o := &s.cells[i]
		if c.sub(o.c).norm() < k*(R+o.R) {
			return false
		}
	}
	return true
}

// layout places the cells. Mitotic cells and cytokinetic pairs appear now and then in any sample
// (their green pattern only with the label), dense packing likewise (always with cell junctions),
// so none of these is a give-away of the label by itself.
func (s *scene) layout() {
	r, n := s.r, float64(s.n)
	dense := s.has[22] || r.chance(0.3)
	spacing := 0.9
	if dense {
		spacing = 0.78
	}
	meanR := n * r.uniform(0.15, 0.21)
	want := r.irange(2, 6)
	if dense {
		want += 2
	}
	cellR := func() float64 { return meanR * r.uniform(0.85, 1.15) }
	inner := func(m float64) pt { return pt{r.uniform(m*n, (1-m)*n), r.uniform(m*n, (1-m)*n)} }

	// A cytokinetic pair: two small round daughters side by side.
	if s.has[16] || r.chance(0.1) {
		R := meanR * 0.72
		c := inner(0.3)
		a := r.uniform(0, 2*math.Pi)
		d := polar(R*1.15, a)
		i := len(s.cells)
		for k, p := range []pt{c.sub(d), c.add(d)} {
			ce := s.newCell(p, R, true)
			ce.na, ce.nb = R*0.4, R*0.34
			ce.nth = a + math.Pi/2
			away := a + math.Pi*float64(1-k)
			ce.n = p.add(polar(0.15*R, away))
			ce.side = away
			ce.blue = math.Min(1, ce.blue*1.25)
			ce.sister = i + 1 - k
			s.cells = append(s.cells, ce)
		}
	}
	// Mitotic cells (metaphase).
	nm := 0
	if s.has[17] {
		nm = r.irange(1, 2)
	} else if r.chance(0.12) {
		nm = 1
	}
	for range nm {
		for range 50 {
			R := meanR * r.uniform(0.8, 0.95)
			c := inner(0.18)
			if !s.fits(c, R, spacing) {
				continue
			}
			ce := s.newCell(c, R, true)
			ce.mitotic = true
			ce.plate = r.uniform(0, math.Pi)
			ce.n = c
			s.cells = append(s.cells, ce)
			break
		}
	}
	// Cell junctions need cells that touch: place a neighbour against an existing cell.
	if s.has[22] {
		base := len(s.cells)
		if base == 0 {
			s.cells = append(s.cells, s.newCell(inner(0.3), cellR(), false))
			base = 1
		}
		o := s.cells[r.intn(base)]
		R := cellR()
		for range 50 {
			c := o.c.add(polar((R+o.R)*0.8, r.uniform(0, 2*math.Pi)))
			if s.fits(c, R, 0.7) {
				s.cells = append(s.cells, s.newCell(c, R, false))
				break
			}
		}
	}
	for tries := 0; len(s.cells) < want && tries < 300; tries++ {
		R := cellR()
		c := pt{r.uniform(-0.05*n, 1.05*n), r.uniform(-0.05*n, 1.05*n)}
		if len(s.cells) < 2 {
			c = inner(0.2) // at least two cells well inside the field
		}
		if s.fits(c, R, spacing) {
			s.cells = append(s.cells, s.newCell(c, R, false))
		}
	}
	for i := range s.cells {
		ce := &s.cells[i]
		if ce.mitotic {
			ce.cs = ce.c.add(polar(0.5*ce.R, ce.plate+math.Pi/2))
		} else {
			ce.cs = ce.nucEdge(ce.side, s.px(1.5, 1))
		}
	}
}

// own assigns each pixel to at most one cell (a nucleus claims its pixels first) and marks borders.
func (s *scene) own() {
	n := s.n
	s.owner = make([]int16, n*n)
	s.rc = make([]float32, n*n)
	s.rn = make([]float32, n*n)
	s.edge = make([]uint8, n*n)
	key := make([]float32, n*n)
	for i := range s.owner {
		s.owner[i] = -1
		key[i] = float32(math.Inf(1))
		s.rn[i] = 9
	}
	for i := range s.cells {
		ce := &s.cells[i]
		ext := ce.R * 1.3
		x0, x1 := max(int(ce.c.x-ext), 0), min(int(ce.c.x+ext)+1, n-1)
		y0, y1 := max(int(ce.c.y-ext), 0), min(int(ce.c.y+ext)+1, n-1)
		ce.x0, ce.y0, ce.x1, ce.y1 = x1, y1, x0, y0
		for y := y0; y <= y1; y++ {
			for x := x0; x <= x1; x++ {
				p := pt{float64(x) + 0.5, float64(y) + 0.5}
				d := p.sub(ce.c)
				rc := d.norm() / ce.radiusAt(math.Atan2(d.y, d.x))
				rn := 9.0
				if !ce.mitotic {
					rn = ce.rhoNuc(p)
				}
				k := rc
				if rn < 1 {
					k = rn - 2
				} else if rc >= 1 {
					continue
				}
				idx := y*n + x
				if float32(k) < key[idx] {
					key[idx] = float32(k)
					s.owner[idx] = int16(i)
					s.rc[idx] = float32(rc)
					s.rn[idx] = float32(rn)
				}
			}
		}
	}
	for y := range n {
		for x := range n {
			idx := y*n + x
			o := s.owner[idx]
			if o < 0 {
				continue
			}
			ce := &s.cells[o]
			ce.x0, ce.y0 = min(ce.x0, x), min(ce.y0, y)
			ce.x1, ce.y1 = max(ce.x1, x), max(ce.y1, y)
			for _, d := range [4][2]int{{-1, 0}, {1, 0}, {0, -1}, {0, 1}} {
				xx, yy := x+d[0], y+d[1]
				if xx < 0 || yy < 0 || xx >= n || yy >= n {
					continue
				}
				q := s.owner[yy*n+xx]
				if q == o {
					continue
				}
				if q >= 0 {
					s.edge[idx] = 2
				} else if s.edge[idx] == 0 {
					s.edge[idx] = 1
				}
			}
		}
	}
}

// owned reports whether cell ci owns any pixel.
func (s *scene) owned(ci int) bool { c := &s.cells[ci]; return c.x1 >= c.x0 }

// randIn draws a point of cell ci's region (inCyto, inNuc or inCell) whose normalised outline
// distance lies in [rcLo, rcHi]; ok is false when none was found.
func (s *scene) randIn(ci int, m maskMode, rcLo, rcHi float64) (pt, bool) {
	ce := &s.cells[ci]
	if !s.owned(ci) {
		return pt{}, false
	}
	for range 60 {
		p := pt{s.r.uniform(float64(ce.x0), float64(ce.x1+1)), s.r.uniform(float64(ce.y0), float64(ce.y1+1))}
		idx := int(p.y)*s.n + int(p.x)
		if !s.allowed(idx, ci, m) {
			continue
		}
		if rc := float64(s.rc[idx]); rc < rcLo || rc > rcHi {
			continue
		}
		return p, true
	}
	return pt{}, false
}

// inside reports whether p is a pixel of cell ci in mode m.
func (s *scene) inside(p pt, ci int, m maskMode) bool {
	x, y := int(math.Floor(p.x)), int(math.Floor(p.y))
	if x < 0 || y < 0 || x >= s.n || y >= s.n {
		return false
	}
	return s.allowed(y*s.n+x, ci, m)
}

// organelles sets up the structures the counterstains and several classes share.
func (s *scene) organelles(ci int) {
	r := s.r
	ce := &s.cells[ci]
	if !ce.mitotic {
		for range r.irange(1, 3) {
			a := r.uniform(0, 2*math.Pi)
			p := ce.n.add(polar(r.uniform(0, 0.5)*ce.nucRadiusAt(a), a))
			ce.nucleoli = append(ce.nucleoli, blob{p, math.Max(r.uniform(0.17, 0.25)*ce.nb, 0.8)})
		}
	}
	// Microtubules: from around the nucleus (or the spindle poles) outwards to the cell border.
	k := r.irange(18, 30)
	step := s.px(1.5, 0.8)
	for range k {
		var p pt
		var dir float64
		if ce.mitotic {
			p = ce.c.add(polar(r.uniform(0.2, 0.45)*ce.R, r.uniform(0, 2*math.Pi)))
			dir = math.Atan2(p.y-ce.c.y, p.x-ce.c.x)
		} else {
			a := r.uniform(0, 2*math.Pi)
			p = ce.nucEdge(a, s.px(0.6, 0.5))
			dir = a + r.uniform(-0.5, 0.5)
		}
		line := []pt{p}
		for len(line) < 200 {
			dir += 0.12 * r.norm()
			q := p.add(polar(step, dir))
			if !s.inside(q, ci, inCyto) {
				break
			}
			if idx := int(q.y)*s.n + int(q.x); s.rc[idx] > 0.96 {
				break
			}
			line = append(line, q)
			p = q
		}
		if len(line) >= 3 {
			ce.mts = append(ce.mts, line)
		}
	}
}

// paint draws the three counterstains and the green protein pattern.
func (s *scene) paint() {
	s.paintBlue()
	s.paintRed()
	s.paintYellow()
	s.paintGreen()
}

func (s *scene) paintBlue() {
	b := s.ch[pipeline.Blue]
	n := s.n
	for ci := range s.cells {
		ce := &s.cells[ci]
		if ce.mitotic {
			// Condensed chromosomes in a metaphase plate.
			d := polar(0.42*ce.R, ce.plate)
			for range 14 {
				off := polar(s.r.uniform(-0.07, 0.07)*ce.R, ce.plate+math.Pi/2)
				t := s.r.uniform(-1, 1)
				s.stamp(b, ce.c.add(d.mul(t)).add(off), s.px(1.2, 0.7), 0.9*ce.blue, ci, inCell)
			}
			continue
		}
		for y := ce.y0; y <= ce.y1; y++ {
			for x := ce.x0; x <= ce.x1; x++ {
				idx := y*n + x
				if int(s.owner[idx]) != ci || s.rn[idx] > 1 {
					continue
				}
				e := smoothstep(1, 0.8, float64(s.rn[idx]))
				b[idx] += float32(ce.blue * e * (0.55 + 0.45*float64(s.nucTx[idx])))
			}
		}
		// Nucleoli are dark holes in the DNA stain.
		for _, nl := range ce.nucleoli {
			s.stamp(b, nl.p, nl.s, -0.45*ce.blue, ci, inNuc)
		}
	}
	for i, v := range b {
		b[i] = max(v, 0)
	}
}

func (s *scene) paintRed() {
	rd := s.ch[pipeline.Red]
	n := s.n
	sig := s.px(0.55, 0.5)
	for ci := range s.cells {
		ce := &s.cells[ci]
		for y := ce.y0; y <= ce.y1; y++ {
			for x := ce.x0; x <= ce.x1; x++ {
				idx := y*n + x
				if int(s.owner[idx]) == ci && s.rn[idx] >= 1 {
					rd[idx] += float32(ce.red * 0.15 * (1.1 - float64(s.rc[idx])) * (0.6 + 0.8*float64(s.cytTx[idx])))
				}
			}
		}
		for _, l := range ce.mts {
			s.path(rd, l, sig, 0.7*ce.red, ci, inCyto)
		}
		if ce.mitotic {
			s.spindle(rd, ci, 0.8*ce.red)
		}
		if ce.sister > ci {
			s.bridge(rd, ci, 0.6*ce.red)
		}
	}
}

func (s *scene) paintYellow() {
	yl := s.ch[pipeline.Yellow]
	n := s.n
	for ci := range s.cells {
		ce := &s.cells[ci]
		contrast := 0.8
		if ce.mitotic {
			contrast = 0.4
		}
		for y := ce.y0; y <= ce.y1; y++ {
			for x := ce.x0; x <= ce.x1; x++ {
				idx := y*n + x
				if int(s.owner[idx]) != ci || s.rn[idx] < 1 {
					continue
				}
				net := float64(s.erNet[idx]) * (0.4 + 1.2*float64(s.cytTx[idx]))
				yl[idx] += float32(ce.yellow * s.erDensity(idx) * ((1 - contrast) + contrast*net))
			}
		}
	}
}

// erDensity is the ER's density at a cytoplasm pixel: highest around the nucleus.
func (s *scene) erDensity(idx int) float64 {
	return clamp(1.2-0.85*float64(s.rc[idx]), 0.15, 1) * smoothstep(1, 1.15, float64(s.rn[idx])+0.1)
}

// spindle draws a bipolar fan of fibres from the two poles of a mitotic cell to its plate.
func (s *scene) spindle(dst []float32, ci int, amp float64) {
	ce := &s.cells[ci]
	ax := ce.plate + math.Pi/2
	sig := s.px(0.55, 0.5)
	for _, sign := range []float64{1, -1} {
		pole := ce.c.add(polar(sign*0.5*ce.R, ax))
		for k := range 9 {
			t := float64(k-4) / 4
			end := ce.c.add(polar(t*0.4*ce.R, ce.plate))
			s.line(dst, pole, end, sig, amp, ci, inCell)
		}
		s.stamp(dst, pole, s.px(1.1, 0.7), amp, ci, inCell)
	}
}

// bridge draws the intercellular bridge of a cytokinetic pair (ci and its sister).
func (s *scene) bridge(dst []float32, ci int, amp float64) {
	a := &s.cells[ci]
	b := &s.cells[a.sister]
	d := b.c.sub(a.c)
	l := d.norm()
	if l == 0 {
		return
	}
	u := d.mul(1 / l)
	p0 := a.c.add(u.mul(0.45 * a.R))
	p1 := b.c.sub(u.mul(0.45 * b.R))
	s.line(dst, p0, p1, s.px(0.7, 0.55), amp, ci, anywhere)
}
