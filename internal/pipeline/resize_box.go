package pipeline

import (
	"encoding/binary"
	"math/bits"
)

// maxBoxArea bounds the block area n = fx*fy of the integer path: sums of n 8-bit pixels stay far
// inside uint32, and the float reference path's error bound used below stays meaningful.
const maxBoxArea = 1 << 15

// boxFactors reports whether resizing sw x sh to dw x dh shrinks (or keeps) both axes by integer
// factors with a block area resizeBox handles.
func boxFactors(sw, sh, dw, dh int) (fx, fy int, ok bool) {
	if dw <= 0 || dh <= 0 || sw < dw || sh < dh || sw%dw != 0 || sh%dh != 0 {
		return 0, 0, false
	}
	fx, fy = sw/dw, sh/dh
	if fx*fy > maxBoxArea {
		return 0, 0, false
	}
	return fx, fy, true
}

// resizeBox is the area average for integer factors: every output pixel is the mean of an fx x fy
// block, computed from the exact integer block sum. It returns the same bytes as resizeGeneral,
// whose float32 arithmetic rounds the exact mean to nearest with ties up whenever the block area n
// is a power of two (every weight 1/fx, 1/fy, every partial sum and the +0.5 are then exact in
// float32 for n <= 2^15). For other n the float weights (1/3, 1/5, ...) are inexact: the exact
// rounding agrees with the float path except for means within the float path's error of a
// rounding boundary (x.5, the ties), and those few pixels -- counted in the second result -- are
// recomputed with the float path's operations in its order.
//
// The source is read once. Power-of-two areas up to 256 with fx 2, 4 or 8 (512 -> 256, 128, 64)
// sum eight pixels at a time in 16-bit lanes of a uint64 (boxRowSWAR); the others sum fy rows into
// per-column uint32 sums, then each run of fx columns.
func resizeBox(p Plane, w, h, fx, fy int) (Plane, int) {
	n := fx * fy
	sw := p.W
	out := make([]uint8, w*h)
	col := make([]uint32, sw)
	pow2 := n&(n-1) == 0
	shift := uint(bits.TrailingZeros(uint(n)))
	half := uint32(n / 2)
	// Fallback window: float32 error of the reference path is below (2fx+2fy+4)*256*2^-24 in output
	// units; a pixel is recomputed when its exact value+0.5 lies within 4x that of an integer. In
	// units of 1/(2n): 2n*(fx+fy+2)*2^-13 = n*(fx+fy+2) >> 12, at least 1 so exact ties always go.
	tol := uint32(max(1, (n*(fx+fy+2))>>12))
	twoN := uint32(2 * n)
	var wx, wy float32
	if !pow2 {
		wx, wy = boxWeight(fx), boxWeight(fy)
	}
	swar := pow2 && n <= 256 && (fx == 2 || fx == 4 || fx == 8)
	redo := 0
	for oy := 0; oy < h; oy++ {
		if swar {
			boxRowSWAR(p.Pix[oy*fy*sw:], sw, fx, fy, shift, out[oy*w:(oy+1)*w])
			continue
		}
		src := p.Pix[oy*fy*sw:]
		// Vertical sums of the block's fy rows.
		row := src[:sw]
		for x, v := range row {
			col[x] = uint32(v)
		}
		for r := 1; r < fy; r++ {
			row = src[r*sw : (r+1)*sw]
			c := col[:len(row)]
			for x, v := range row {
				c[x] += uint32(v)
			}
		}
		o := out[oy*w : (oy+1)*w]
		if pow2 {
			switch fx {
			case 1:
				for x := range o {
					o[x] = uint8((col[x] + half) >> shift)
				}
			case 2:
				c := col[:2*len(o)]
				for x := range o {
					o[x] = uint8((c[2*x] + c[2*x+1] + half) >> shift)
				}
			case 4:
				c := col[:4*len(o)]
				for x := range o {
					s := c[4*x : 4*x+4 : 4*x+4]
					o[x] = uint8((s[0] + s[1] + s[2] + s[3] + half) >> shift)
				}
			default:
				for x := range o {
					var s uint32
					for _, v := range col[x*fx : (x+1)*fx] {
						s += v
					}
					o[x] = uint8((s + half) >> shift)
				}
			}
			continue
		}
		for x := range o {
			var s uint32
			for _, v := range col[x*fx : (x+1)*fx] {
				s += v
			}
			// value+0.5 = (2s+n)/(2n); q its floor, rem its distance above q in 1/(2n) units.
			num := 2*s + uint32(n)
			q, rem := num/twoN, num%twoN
			if rem < tol || twoN-rem < tol {
				o[x] = boxPixelFloat(p, x*fx, oy*fy, fx, fy, wx, wy)
				redo++
				continue
			}
			o[x] = uint8(q)
		}
	}
	return Plane{W: w, H: h, Pix: out}, redo
}

// boxRowSWAR writes one output row of a power-of-two block area n = fx*fy <= 256 with fx 2, 4 or
// 8, the block rows starting at src (row stride sw). Eight source columns are summed at a time in
// 16-bit lanes of a uint64 (even and odd bytes apart); a lane holds at most 255*n + n/2 < 2^16.
func boxRowSWAR(src []uint8, sw, fx, fy int, shift uint, o []uint8) {
	const m8 = 0x00FF00FF00FF00FF
	half := uint64(1<<shift>>1) * 0x0001000100010001
	x := 0 // output index
	c := 0 // source column
	for ; c+8 <= sw; c += 8 {
		var lo, hi uint64
		for r := 0; r < fy; r++ {
			v := binary.LittleEndian.Uint64(src[r*sw+c:])
			lo += v & m8
			hi += (v >> 8) & m8
		}
		s := lo + hi // lane k: columns 2k + 2k+1
		switch fx {
		case 2: // four outputs, one per lane
			t := ((s + half) >> shift) & m8
			t = (t | t>>8) & 0x0000FFFF0000FFFF
			t = (t | t>>16) & 0xFFFFFFFF
			binary.LittleEndian.PutUint32(o[x:], uint32(t))
			x += 4
		case 4: // two outputs, lanes 0 and 2
			t := ((s + s>>16 + half) >> shift)
			o[x] = uint8(t)
			o[x+1] = uint8(t >> 32)
			x += 2
		default: // 8: one output, lane 0
			t := s + s>>16
			t += t >> 32
			o[x] = uint8((t&0xFFFF + half&0xFFFF) >> shift)
			x++
		}
	}
	// The last sw%8 columns (a multiple of fx).
	h := uint32(1 << shift >> 1)
	for ; x < len(o); x++ {
		var sum uint32
		for r := 0; r < fy; r++ {
			for _, v := range src[r*sw+x*fx : r*sw+(x+1)*fx] {
				sum += uint32(v)
			}
		}
		o[x] = uint8((sum + h) >> shift)
	}
}

// boxWeight is the float32 tap weight axisWeights gives every source pixel of an integer factor f
// (the covered length 1 over the scale, computed in float64 and rounded once to float32).
func boxWeight(f int) float32 {
	if f == 1 {
		return 1
	}
	return float32(1 / float64(f))
}

// boxPixelFloat is resizeGeneral's computation of the output pixel whose block starts at (x0, y0),
// operation for operation: a float32 horizontal sum per row over the fx taps left to right, then
// the float32 vertical sum of those over the fy rows top to bottom, +0.5, clamp, truncate.
func boxPixelFloat(p Plane, x0, y0, fx, fy int, wx, wy float32) uint8 {
	var acc float32
	for r := 0; r < fy; r++ {
		row := p.Pix[(y0+r)*p.W+x0 : (y0+r)*p.W+x0+fx]
		var s float32
		for _, v := range row {
			s += wx * float32(v)
		}
		acc += wy * s
	}
	v := acc + 0.5
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	default:
		return uint8(v)
	}
}
