package synth

import (
	"math"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// pattern paints class-specific green into cell ci with expression level e (about 0.4..1).
type pattern func(s *scene, g []float32, ci int, e float64)

// patterns holds the green pattern of every class, indexed by class id (see labels.ClassNames).
var patterns = [labels.NumClasses]pattern{
	0:  nucleoplasm,
	1:  nuclearMembrane,
	2:  nucleoli,
	3:  fibrillarCenter,
	4:  nuclearSpeckles,
	5:  nuclearBodies,
	6:  endoplasmicReticulum,
	7:  golgi,
	8:  peroxisomes,
	9:  endosomes,
	10: lysosomes,
	11: intermediateFilaments,
	12: actinFilaments,
	13: focalAdhesions,
	14: microtubules,
	15: microtubuleEnds,
	16: cytokineticBridge,
	17: mitoticSpindle,
	18: mtoc,
	19: centrosome,
	20: lipidDroplets,
	21: plasmaMembrane,
	22: cellJunctions,
	23: mitochondria,
	24: aggresome,
	25: cytosol,
	26: cytoplasmicBodies,
	27: rodsAndRings,
}

// paintGreen superposes the patterns of all labels. Most cells express each label, at varying
// levels; mitotic cells show only the spindle, and a diffuse cell-wide signal otherwise.
func (s *scene) paintGreen() {
	g := s.ch[pipeline.Green]
	r := s.r
	// Weak autofluorescence everywhere in the cells.
	for idx, o := range s.owner {
		if o >= 0 {
			g[idx] += float32(0.025 * (0.5 + float64(s.cytTx[idx])))
		}
	}
	for c, on := range s.has {
		if !on {
			continue
		}
		strength := r.uniform(0.6, 1)
		painted := false
		for ci := range s.cells {
			ce := &s.cells[ci]
			e := strength * r.uniform(0.55, 1)
			switch {
			case !s.owned(ci):
				continue
			case c == 16:
				if ce.sister > ci {
					cytokineticBridge(s, g, ci, e)
					painted = true
				}
				continue
			case c == 17:
				if ce.mitotic {
					mitoticSpindle(s, g, ci, e)
					painted = true
				}
				continue
			case ce.mitotic:
				s.fill(g, ci, inCell, func(idx int) float64 { return 0.25 * e * (1.1 - float64(s.rc[idx])) })
				continue
			}
			if r.chance(0.12) && (painted || ci < len(s.cells)-1) {
				continue // a non-expressing cell
			}
			patterns[c](s, g, ci, e)
			painted = true
		}
	}
}

// fill adds f(idx) on every pixel of cell ci allowed by m.
func (s *scene) fill(g []float32, ci int, m maskMode, f func(idx int) float64) {
	ce := &s.cells[ci]
	n := s.n
	for y := ce.y0; y <= ce.y1; y++ {
		for x := ce.x0; x <= ce.x1; x++ {
			idx := y*n + x
			if s.allowed(idx, ci, m) {
				g[idx] += float32(f(idx))
			}
		}
	}
}

// dots scatters k Gaussian dots over cell ci's region m within outline distance [lo, hi].
func (s *scene) dots(g []float32, ci int, m maskMode, k int, lo, hi, sigLo, sigHi, amp float64) {
	for range k {
		if p, ok := s.randIn(ci, m, lo, hi); ok {
			s.stamp(g, p, s.px(s.r.uniform(sigLo, sigHi), 0.5), amp*s.r.uniform(0.7, 1), ci, m)
		}
	}
}

// perinuclear returns a point beside the nucleus on the cell's perinuclear side, spread by
// angle spread and distance (in cell radii) in [dLo, dHi] beyond the nuclear border.
func (s *scene) perinuclear(ci int, spread, dLo, dHi float64) pt {
	ce := &s.cells[ci]
	a := ce.side + spread*s.r.norm()
	return ce.nucEdge(a, s.r.uniform(dLo, dHi)*ce.R)
}

func nucleoplasm(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	s.fill(g, ci, inNuc, func(idx int) float64 {
		return e * 0.7 * smoothstep(1, 0.85, float64(s.rn[idx])) * (0.8 + 0.2*float64(s.nucTx[idx]))
	})
	for _, nl := range ce.nucleoli {
		s.stamp(g, nl.p, nl.s*1.1, -0.6*e, ci, inNuc)
	}
}

func nuclearMembrane(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	rad := math.Sqrt(ce.na * ce.nb)
	sig := s.px(0.6, 0.55)
	s.fill(g, ci, inCell, func(idx int) float64 {
		d := (float64(s.rn[idx]) - 0.97) * rad
		return e * math.Exp(-d*d/(2*sig*sig))
	})
}

func nucleoli(s *scene, g []float32, ci int, e float64) {
	for _, nl := range s.cells[ci].nucleoli {
		s.stamp(g, nl.p, nl.s, 1.6*e, ci, inNuc)
	}
}

func fibrillarCenter(s *scene, g []float32, ci int, e float64) {
	for _, nl := range s.cells[ci].nucleoli {
		for range s.r.irange(2, 5) {
			p := nl.p.add(polar(s.r.uniform(0, 1.2)*nl.s, s.r.uniform(0, 2*math.Pi)))
			s.stamp(g, p, s.px(0.45, 0.5), e, ci, inNuc)
		}
	}
}

func nuclearSpeckles(s *scene, g []float32, ci int, e float64) {
	s.fill(g, ci, inNuc, func(idx int) float64 { return 0.15 * e })
	s.dots(g, ci, inNuc, s.r.irange(10, 20), 0, 1, 0.6, 1.0, 0.8*e)
}

func nuclearBodies(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	for range s.r.irange(2, 5) {
		a := s.r.uniform(0, 2*math.Pi)
		p := ce.n.add(polar(s.r.uniform(0.1, 0.75)*ce.nucRadiusAt(a), a))
		s.stamp(g, p, s.px(1.0, 0.75), 1.2*e, ci, inNuc)
	}
}

func endoplasmicReticulum(s *scene, g []float32, ci int, e float64) {
	s.fill(g, ci, inCyto, func(idx int) float64 {
		return e * s.erDensity(idx) * (0.15 + 0.85*float64(s.erNet[idx]))
	})
}

func golgi(s *scene, g []float32, ci int, e float64) {
	for range s.r.irange(8, 14) {
		p := s.perinuclear(ci, 0.28, 0.01, 0.12)
		s.stamp(g, p, s.px(s.r.uniform(0.8, 1.4), 0.6), e, ci, inCyto)
	}
}

func peroxisomes(s *scene, g []float32, ci int, e float64) {
	s.dots(g, ci, inCyto, s.r.irange(25, 45), 0, 0.95, 0.45, 0.6, e)
}

func endosomes(s *scene, g []float32, ci int, e float64) {
	s.dots(g, ci, inCyto, s.r.irange(8, 18), 0.45, 0.95, 0.8, 1.5, e)
}

func lysosomes(s *scene, g []float32, ci int, e float64) {
	for range s.r.irange(10, 20) {
		p := s.perinuclear(ci, 1.2, 0.03, 0.22)
		s.ring(g, p, s.px(0.8, 0.6), s.px(0.5, 0.5), 0.6*e, ci, inCyto)
	}
}

func intermediateFilaments(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	step := s.px(1.5, 0.8)
	for range s.r.irange(8, 14) {
		p, ok := s.randIn(ci, inCyto, 0, 0.8)
		if !ok {
			continue
		}
		// Wavy fibres that wind around the nucleus.
		sign := 1.0
		if s.r.chance(0.5) {
			sign = -1
		}
		d := p.sub(ce.n)
		dir := math.Atan2(d.y, d.x) + sign*math.Pi/2
		line := []pt{p}
		for range int(2 * ce.R / step) {
			d := p.sub(ce.n)
			want := math.Atan2(d.y, d.x) + sign*math.Pi/2
			dir += 0.2*math.Remainder(want-dir, 2*math.Pi) + 0.12*s.r.norm()
			q := p.add(polar(step, dir))
			if !s.inside(q, ci, inCyto) {
				break
			}
			line = append(line, q)
			p = q
		}
		s.path(g, line, s.px(0.55, 0.5), 0.8*e, ci, inCyto)
	}
}

func actinFilaments(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	a := s.r.uniform(0, math.Pi)
	along, across := polar(1.3*ce.R, a), polar(1, a+math.Pi/2)
	for range s.r.irange(6, 11) {
		c := ce.c.add(across.mul(s.r.uniform(-0.9, 0.9) * ce.R))
		s.line(g, c.sub(along), c.add(along), s.px(0.55, 0.5), 0.75*e*s.r.uniform(0.7, 1), ci, inCell)
	}
}

func focalAdhesions(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	for range s.r.irange(8, 16) {
		p, ok := s.randIn(ci, inCyto, 0.75, 0.95)
		if !ok {
			continue
		}
		d := p.sub(ce.c)
		u := d.mul(s.px(1.6, 1) / math.Max(d.norm(), 1e-9))
		s.line(g, p.sub(u), p.add(u), s.px(0.6, 0.5), e, ci, inCell)
	}
}

func microtubules(s *scene, g []float32, ci int, e float64) {
	for _, l := range s.cells[ci].mts {
		s.path(g, l, s.px(0.55, 0.5), 0.7*e, ci, inCyto)
	}
}

func microtubuleEnds(s *scene, g []float32, ci int, e float64) {
	for _, l := range s.cells[ci].mts {
		if s.r.chance(0.7) {
			s.stamp(g, l[len(l)-1], s.px(0.6, 0.55), e, ci, inCell)
		}
	}
}

func cytokineticBridge(s *scene, g []float32, ci int, e float64) {
	a := &s.cells[ci]
	b := &s.cells[a.sister]
	s.bridge(g, ci, 0.8*e)
	s.stamp(g, lerp(a.c, b.c, 0.5), s.px(1.2, 0.7), e, ci, anywhere)
}

func mitoticSpindle(s *scene, g []float32, ci int, e float64) {
	s.spindle(g, ci, e)
}

func mtoc(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	s.stamp(g, ce.cs, s.px(1.4, 0.8), e, ci, anywhere)
	for range 8 {
		a := s.r.uniform(0, 2*math.Pi)
		s.line(g, ce.cs, ce.cs.add(polar(0.22*ce.R, a)), s.px(0.5, 0.5), 0.35*e, ci, inCyto)
	}
}

func centrosome(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	s.stamp(g, ce.cs, s.px(0.55, 0.55), e, ci, anywhere)
	if s.r.chance(0.6) {
		s.stamp(g, ce.cs.add(polar(s.px(1.8, 1.2), s.r.uniform(0, 2*math.Pi))), s.px(0.55, 0.55), e, ci, anywhere)
	}
}

func lipidDroplets(s *scene, g []float32, ci int, e float64) {
	for range s.r.irange(3, 8) {
		if p, ok := s.randIn(ci, inCyto, 0.1, 0.85); ok {
			s.ring(g, p, s.px(s.r.uniform(1.6, 2.8), 1.3), s.px(0.5, 0.5), e, ci, inCyto)
		}
	}
}

func plasmaMembrane(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	sig := s.px(0.7, 0.6)
	s.fill(g, ci, inCell, func(idx int) float64 {
		if s.edge[idx] != 0 {
			return e
		}
		d := (1 - float64(s.rc[idx])) * ce.R
		return e * math.Exp(-d*d/(2*sig*sig))
	})
}

func cellJunctions(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	n := s.n
	for y := ce.y0; y <= ce.y1; y++ {
		for x := ce.x0; x <= ce.x1; x++ {
			idx := y*n + x
			if int(s.owner[idx]) == ci && s.edge[idx] == 2 {
				s.stamp(g, pt{float64(x) + 0.5, float64(y) + 0.5}, s.px(0.7, 0.6), 0.6*e, ci, anywhere)
			}
		}
	}
}

func mitochondria(s *scene, g []float32, ci int, e float64) {
	for range s.r.irange(15, 30) {
		p, ok := s.randIn(ci, inCyto, 0, 0.9)
		if !ok {
			continue
		}
		h := polar(s.px(s.r.uniform(1, 2.2), 0.8), s.r.uniform(0, 2*math.Pi))
		s.line(g, p.sub(h), p.add(h), s.px(0.55, 0.5), 0.8*e, ci, inCyto)
	}
}

func aggresome(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	p := ce.nucEdge(ce.side, 0.12*ce.R)
	s.stamp(g, p, math.Max(0.11*ce.R, 1), 1.2*e, ci, inCell)
}

func cytosol(s *scene, g []float32, ci int, e float64) {
	s.fill(g, ci, inCyto, func(idx int) float64 {
		return e * 0.55 * smoothstep(1, 0.85, float64(s.rc[idx])) * (0.75 + 0.25*float64(s.cytTx[idx]))
	})
}

func cytoplasmicBodies(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	for range s.r.irange(1, 3) {
		if p, ok := s.randIn(ci, inCyto, 0.1, 0.8); ok {
			s.stamp(g, p, math.Max(0.06*ce.R, 0.8), e, ci, inCyto)
		}
	}
}

func rodsAndRings(s *scene, g []float32, ci int, e float64) {
	ce := &s.cells[ci]
	for range s.r.irange(1, 2) {
		if p, ok := s.randIn(ci, inCell, 0.1, 0.8); ok {
			h := polar(0.14*ce.R, s.r.uniform(0, 2*math.Pi))
			s.line(g, p.sub(h), p.add(h), s.px(0.55, 0.5), e, ci, inCell)
		}
	}
	for range s.r.irange(1, 2) {
		if p, ok := s.randIn(ci, inCell, 0.1, 0.8); ok {
			s.ring(g, p, s.px(1.5, 1.2), s.px(0.5, 0.5), e, ci, inCell)
		}
	}
}

// quantize maps channel c to 8 bits: a random exposure puts a high quantile of the signal at a
// random level, then background, read noise and shot noise are added.
func (s *scene) quantize(c pipeline.Channel, out []uint8) {
	v := s.ch[c]
	r := s.r
	// Soft saturation: overlapping structures brighten without drowning out the rest.
	for i, x := range v {
		v[i] = x / (1 + x/1.5)
	}
	q, hi := quantile(v, 0.998)
	ref := math.Max(q, 0.5*hi)
	gain := 0.0
	if ref > 0 {
		gain = r.uniform(140, 250) / ref
	}
	bg := r.uniform(1, 8)
	read := r.uniform(1, 3.5)
	shot := r.uniform(0.25, 0.6)
	read2, shot2 := read*read, shot*shot
	for i, x := range v {
		val := float64(x) * gain
		// Read noise and shot noise together: one Gaussian of variance read^2 + shot^2 * signal.
		val += bg + math.Sqrt(read2+shot2*val)*r.fastNorm()
		out[i] = uint8(clamp(math.Round(val), 0, 255))
	}
}
