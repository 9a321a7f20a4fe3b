package pipeline

import "math"

// Resize scales p to w x h and returns a new plane. Each axis is resampled separately: an axis
// that shrinks uses area averaging (every output pixel is the coverage-weighted mean of the
// source pixels under it, as OpenCV's INTER_AREA; an integer factor gives exact block means), an
// axis that grows uses bilinear interpolation with pixel centres aligned (align_corners=false,
// edges clamped). Results are rounded to nearest. Same size returns a copy of p. A non-positive
// target size or an empty/inconsistent source returns the zero Plane.
//
// When both axes shrink by integer factors (p.W = fx*w, p.H = fy*h, one of them may be 1) Resize
// takes an exact integer box-filter path (resizeBox) whose output is bit-identical to the general
// float path (resizeGeneral) on every input.
func Resize(p Plane, w, h int) Plane {
	if w <= 0 || h <= 0 || p.W <= 0 || p.H <= 0 || len(p.Pix) < p.W*p.H {
		return Plane{}
	}
	if w == p.W && h == p.H {
		return Plane{W: w, H: h, Pix: append([]uint8(nil), p.Pix[:w*h]...)}
	}
	if fx, fy, ok := boxFactors(p.W, p.H, w, h); ok {
		q, _ := resizeBox(p, w, h, fx, fy)
		return q
	}
	return resizeGeneral(p, w, h)
}

// resizeGeneral is Resize's separable float path for any sizes (p valid, w, h > 0, not both equal).
func resizeGeneral(p Plane, w, h int) Plane {
	xw := axisWeights(p.W, w)
	yw := axisWeights(p.H, h)
	// Horizontal pass: p.H x w floats. The taps of an output pixel are consecutive source pixels
	// (axisWeights adds them left to right), so each is a run starting at idx[off] with weights
	// wt[off:off+n]. Four rows go together, so that their four float32 sums -- each the same
	// operations in the same order as one row alone -- are independent dependency chains.
	tmp := make([]float32, p.H*w)
	sw := p.W
	y := 0
	for ; y+4 <= p.H; y += 4 {
		r0 := p.Pix[y*sw : (y+1)*sw]
		r1 := p.Pix[(y+1)*sw : (y+2)*sw]
		r2 := p.Pix[(y+2)*sw : (y+3)*sw]
		r3 := p.Pix[(y+3)*sw : (y+4)*sw]
		t0 := tmp[y*w : (y+1)*w]
		t1 := tmp[(y+1)*w : (y+2)*w]
		t2 := tmp[(y+2)*w : (y+3)*w]
		t3 := tmp[(y+3)*w : (y+4)*w]
		for x := range t0 {
			k0, k1 := xw.off[x], xw.off[x+1]
			if k0 == k1 {
				continue // no taps (axisWeights gives every output at least one): 0
			}
			wt := xw.wt[k0:k1]
			j := int(xw.idx[k0])
			a0, a1, a2, a3 := r0[j:j+len(wt)], r1[j:j+len(wt)], r2[j:j+len(wt)], r3[j:j+len(wt)]
			var s0, s1, s2, s3 float32
			for k, c := range wt {
				s0 += c * float32(a0[k])
				s1 += c * float32(a1[k])
				s2 += c * float32(a2[k])
				s3 += c * float32(a3[k])
			}
			t0[x], t1[x], t2[x], t3[x] = s0, s1, s2, s3
		}
	}
	for ; y < p.H; y++ {
		row := p.Pix[y*sw : (y+1)*sw]
		t := tmp[y*w : (y+1)*w]
		for x := range t {
			k0, k1 := xw.off[x], xw.off[x+1]
			if k0 == k1 {
				continue
			}
			wt := xw.wt[k0:k1]
			j := int(xw.idx[k0])
			a := row[j : j+len(wt)]
			var s float32
			for k, c := range wt {
				s += c * float32(a[k])
			}
			t[x] = s
		}
	}
	// Vertical pass, accumulating whole rows for locality.
	out := make([]uint8, w*h)
	acc := make([]float32, w)
	for y := 0; y < h; y++ {
		clear(acc)
		for k := yw.off[y]; k < yw.off[y+1]; k++ {
			wt := yw.wt[k]
			src := tmp[int(yw.idx[k])*w : int(yw.idx[k]+1)*w]
			a := acc[:len(src)]
			for x, v := range src {
				a[x] += wt * v
			}
		}
		o := out[y*w : (y+1)*w]
		for x, v := range acc {
			v += 0.5
			switch {
			case v <= 0:
				o[x] = 0
			case v >= 255:
				o[x] = 255
			default:
				o[x] = uint8(v)
			}
		}
	}
	return Plane{W: w, H: h, Pix: out}
}

// weights1D holds, for each output index i, the taps idx[off[i]:off[i+1]] with weights wt[...].
type weights1D struct {
	off []int32
	idx []int32
	wt  []float32
}

func axisWeights(src, dst int) weights1D {
	wts := weights1D{off: make([]int32, 1, dst+1)}
	add := func(j int, v float64) {
		if v <= 0 {
			return
		}
		wts.idx = append(wts.idx, int32(j))
		wts.wt = append(wts.wt, float32(v))
	}
	switch {
	case dst == src:
		for i := 0; i < dst; i++ {
			add(i, 1)
			wts.off = append(wts.off, int32(len(wts.idx)))
		}
	case dst < src: // area
		scale := float64(src) / float64(dst)
		for i := 0; i < dst; i++ {
			x0, x1 := float64(i)*scale, float64(i+1)*scale
			if x1 > float64(src) {
				x1 = float64(src)
			}
			for j := int(x0); j < src && float64(j) < x1; j++ {
				add(j, (math.Min(x1, float64(j+1))-math.Max(x0, float64(j)))/scale)
			}
			wts.off = append(wts.off, int32(len(wts.idx)))
		}
	default: // bilinear
		scale := float64(src) / float64(dst)
		for i := 0; i < dst; i++ {
			f := (float64(i)+0.5)*scale - 0.5
			if f < 0 {
				f = 0
			}
			j := int(f)
			if j >= src-1 {
				add(src-1, 1)
			} else {
				frac := f - float64(j)
				add(j, 1-frac)
				add(j+1, frac)
			}
			wts.off = append(wts.off, int32(len(wts.idx)))
		}
	}
	return wts
}
