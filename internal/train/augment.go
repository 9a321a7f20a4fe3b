package train

import (
	"math"
	"math/rand/v2"

	"github.com/hpa-plates/hpa/internal/pipeline"
)

// Augment is the training augmentation of the reference recipe, applied to one C x S x S float32
// tensor of pixel intensities in [0,1] (before normalization), the same on every channel so the stains
// stay aligned. Each op is toggled by its field; a zero value disables it.
type Augment struct {
	Brightness float64 // additive shift drawn from U(-Brightness, Brightness), per channel
	Contrast   float64 // x = mean + (x-mean)*U(1-Contrast, 1+Contrast), per channel
	Expand     float64 // zoom out: paste into a canvas up to Expand times larger (1 = off), resize back
	ExpandProb float64 // probability of Expand (default 0.5 when Expand > 1 and this is 0)
	Rot90      bool    // random multiple of 90 degrees
	FlipLR     bool    // random left-right flip
	FlipUD     bool    // random up-down flip
	EraseProb  float64 // probability of one random-erase rectangle (2%-20% of the area, aspect 0.3-3.3)
	RotateDeg  float64 // arbitrary-angle rotation in U(-RotateDeg, RotateDeg) (0 = off), bilinear, zero fill
}

// DefaultAugment is the default set: the 8 symmetries of the square (rot90 + flips). The recipe's
// photometric and geometric extras cost held-out quality at CPU budgets (docs/quality.md).
func DefaultAugment() Augment {
	return Augment{Rot90: true, FlipLR: true, FlipUD: true}
}

// RecipeAugment is the reference Kaggle recipe's full set (the loader benchmark's heavier work).
func RecipeAugment() Augment {
	return Augment{Brightness: 0.1, Contrast: 0.2, Expand: 1.3, Rot90: true, FlipLR: true, FlipUD: true, EraseProb: 0.3}
}

// AugmentRNG returns the generator of one draw: position pos (0, 1, ...) in the order of epoch
// epoch's batches, batch after batch. Keying by the draw position, not by the example, matters: the
// balanced sampler repeats rare examples several times within an epoch, and every repeat must be a new
// view (keyed by example, all repeats of an epoch were the same augmented tensor: duplicated data the
// network memorized within the epoch, the sawtooth of issue 7). The augmentation depends only on
// (seed, epoch, pos), never on which worker ran it or when.
func AugmentRNG(seed uint64, epoch, pos int) *rand.Rand {
	return rand.New(rand.NewPCG(seed^0xa5a5a5a5deadbeef, uint64(epoch)<<32|uint64(uint32(pos))))
}

// AugDraw is one augmentation's random choices, so a test can recompute the augmented tensor
// independently. Apply(x, r) is ApplyDraw(x, Draw(r)).
type AugDraw struct {
	Expand         bool
	ExpandRatio    float64
	ExpandFX       float64
	ExpandFY       float64
	RotateRad      float64
	Rot90          int // quarter turns, applied after the flips
	FlipLR, FlipUD bool
	Contrast       []float32 // per channel factor (nil = off)
	Brightness     []float32 // per channel shift (nil = off)
	Erase          bool
	EraseY, EraseX int
	EraseH, EraseW int
}

// Draw makes the random choices of one augmentation of a c x s x s tensor.
func (a Augment) Draw(c, s int, r *rand.Rand) AugDraw {
	var d AugDraw
	if a.Expand > 1 {
		p := a.ExpandProb
		if p == 0 {
			p = 0.5
		}
		if r.Float64() < p {
			d.Expand = true
			d.ExpandRatio, d.ExpandFX, d.ExpandFY = 1+r.Float64()*(a.Expand-1), r.Float64(), r.Float64()
		}
	}
	if a.RotateDeg > 0 {
		d.RotateRad = (r.Float64()*2 - 1) * a.RotateDeg * math.Pi / 180
	}
	if a.Rot90 {
		d.Rot90 = r.IntN(4)
	}
	if a.FlipLR {
		d.FlipLR = r.IntN(2) == 1
	}
	if a.FlipUD {
		d.FlipUD = r.IntN(2) == 1
	}
	if a.Contrast > 0 {
		d.Contrast = make([]float32, c)
	}
	if a.Brightness > 0 {
		d.Brightness = make([]float32, c)
	}
	for ch := 0; ch < c; ch++ {
		if a.Contrast > 0 {
			d.Contrast[ch] = float32(1 + (r.Float64()*2-1)*a.Contrast)
		}
		if a.Brightness > 0 {
			d.Brightness[ch] = float32((r.Float64()*2 - 1) * a.Brightness)
		}
	}
	if a.EraseProb > 0 && r.Float64() < a.EraseProb {
		area := float64(s*s) * (0.02 + r.Float64()*0.18)
		aspect := math.Exp(math.Log(0.3) + r.Float64()*(math.Log(3.3)-math.Log(0.3)))
		d.Erase = true
		d.EraseH = min(s, max(1, int(math.Sqrt(area*aspect))))
		d.EraseW = min(s, max(1, int(math.Sqrt(area/aspect))))
		d.EraseY, d.EraseX = r.IntN(s-d.EraseH+1), r.IntN(s-d.EraseW+1)
	}
	return d
}

// Apply augments x (c x s x s) in place; tmp is scratch of the same length (allocated when too short).
func (a Augment) Apply(x []float32, c, s int, r *rand.Rand, tmp []float32) {
	ApplyDraw(x, c, s, a.Draw(c, s, r), tmp)
}

// ApplyDraw applies the choices d to x (c x s x s) in place: expand, rotate, flips and quarter turns,
// then per channel contrast, brightness and the clamp to [0,1], then the erase rectangle.
func ApplyDraw(x []float32, c, s int, d AugDraw, tmp []float32) {
	if len(tmp) < len(x) {
		tmp = make([]float32, len(x))
	}
	tmp = tmp[:len(x)]
	if d.Expand {
		expand(x, tmp, c, s, d.ExpandRatio, d.ExpandFX, d.ExpandFY)
	}
	if d.RotateRad != 0 {
		rotate(x, tmp, c, s, d.RotateRad)
	}
	k, lr, ud := d.Rot90, d.FlipLR, d.FlipUD
	if k != 0 || lr || ud {
		// LR flip, then UD flip, then k quarter turns, as one view of the dihedral group of the TTA
		// code (view v >= 4 is v%4 quarter turns after an LR flip; UD flip = rot180 after LR flip).
		v := (k+2*b2i(ud))%4 + 4*b2i(lr != ud)
		_ = pipeline.ApplyView(tmp, x, c, s, v)
		copy(x, tmp)
	}
	plane := s * s
	for ch := 0; ch < c; ch++ {
		p := x[ch*plane : (ch+1)*plane]
		if d.Contrast != nil {
			f := d.Contrast[ch]
			var m float64
			for _, v := range p {
				m += float64(v)
			}
			mean := float32(m / float64(plane))
			for i, v := range p {
				p[i] = mean + (v-mean)*f
			}
		}
		if d.Brightness != nil {
			dv := d.Brightness[ch]
			for i := range p {
				p[i] += dv
			}
		}
		for i, v := range p {
			p[i] = min(max(v, 0), 1)
		}
	}
	if d.Erase {
		for ch := 0; ch < c; ch++ {
			for y := d.EraseY; y < d.EraseY+d.EraseH; y++ {
				row := x[ch*plane+y*s:]
				for xx := d.EraseX; xx < d.EraseX+d.EraseW; xx++ {
					row[xx] = 0
				}
			}
		}
	}
}

// expand shrinks the image by ratio into a zero canvas of the same size at a random place (fx, fy in
// [0,1] pick the offset): the "expand" (zoom-out) augmentation followed by the resize back to s.
func expand(x, tmp []float32, c, s int, ratio, fx, fy float64) {
	inner := int(float64(s) / ratio)
	if inner < 1 || inner >= s {
		return
	}
	ox, oy := int(fx*float64(s-inner)), int(fy*float64(s-inner))
	clear(tmp)
	plane := s * s
	scale := float64(s) / float64(inner)
	for ch := 0; ch < c; ch++ {
		in, out := x[ch*plane:(ch+1)*plane], tmp[ch*plane:(ch+1)*plane]
		for y := 0; y < inner; y++ {
			for xx := 0; xx < inner; xx++ {
				out[(oy+y)*s+ox+xx] = bilinear(in, s, (float64(xx)+0.5)*scale-0.5, (float64(y)+0.5)*scale-0.5)
			}
		}
	}
	copy(x, tmp)
}

// rotate turns the image by theta radians about its center (bilinear, zero outside).
func rotate(x, tmp []float32, c, s int, theta float64) {
	sin, cos := math.Sincos(theta)
	cen := float64(s-1) / 2
	plane := s * s
	for ch := 0; ch < c; ch++ {
		in, out := x[ch*plane:(ch+1)*plane], tmp[ch*plane:(ch+1)*plane]
		for y := 0; y < s; y++ {
			for xx := 0; xx < s; xx++ {
				dx, dy := float64(xx)-cen, float64(y)-cen
				out[y*s+xx] = bilinear(in, s, cos*dx+sin*dy+cen, -sin*dx+cos*dy+cen)
			}
		}
	}
	copy(x, tmp)
}

func bilinear(p []float32, s int, fx, fy float64) float32 {
	if fx < -0.5 || fy < -0.5 || fx > float64(s)-0.5 || fy > float64(s)-0.5 {
		return 0
	}
	fx = min(max(fx, 0), float64(s-1))
	fy = min(max(fy, 0), float64(s-1))
	x0, y0 := int(fx), int(fy)
	x1, y1 := min(x0+1, s-1), min(y0+1, s-1)
	ax, ay := float32(fx-float64(x0)), float32(fy-float64(y0))
	top := p[y0*s+x0]*(1-ax) + p[y0*s+x1]*ax
	bot := p[y1*s+x0]*(1-ax) + p[y1*s+x1]*ax
	return top*(1-ay) + bot*ay
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
