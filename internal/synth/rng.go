package synth

import (
	"hash/fnv"
	"math"
	"math/bits"
)

// rng is a small self-contained generator (xoshiro256**, seeded through splitmix64). The synthetic
// data must be byte-identical for the same seed on every Go version, so nothing here relies on
// the standard library's generators, whose derived methods are free to change.
type rng struct{ s [4]uint64 }

func splitmix64(x *uint64) uint64 {
	*x += 0x9e3779b97f4a7c15
	z := *x
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func newRNG(seed uint64) *rng {
	r := &rng{}
	for i := range r.s {
		r.s[i] = splitmix64(&seed)
	}
	return r
}

// newRNGFor derives an independent stream from a seed and a string (e.g. a sample Id).
func newRNGFor(seed int64, key string) *rng {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	x := uint64(seed) ^ 0x6a09e667f3bcc908
	a := splitmix64(&x)
	return newRNG(a ^ h.Sum64())
}

func (r *rng) uint64() uint64 {
	s := &r.s
	res := bits.RotateLeft64(s[1]*5, 7) * 9
	t := s[1] << 17
	s[2] ^= s[0]
	s[3] ^= s[1]
	s[1] ^= s[2]
	s[0] ^= s[3]
	s[2] ^= t
	s[3] = bits.RotateLeft64(s[3], 45)
	return res
}

// uint64n is uniform in [0, n) (Lemire's multiply-shift with rejection); n must be > 0.
func (r *rng) uint64n(n uint64) uint64 {
	hi, lo := bits.Mul64(r.uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(r.uint64(), n)
		}
	}
	return hi
}

// intn is uniform in [0, n); n <= 0 gives 0.
func (r *rng) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(r.uint64n(uint64(n)))
}

// irange is uniform in [lo, hi] inclusive.
func (r *rng) irange(lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + r.intn(hi-lo+1)
}

// float is uniform in [0, 1).
func (r *rng) float() float64 { return float64(r.uint64()>>11) / (1 << 53) }

// uniform is uniform in [lo, hi).
func (r *rng) uniform(lo, hi float64) float64 { return lo + (hi-lo)*r.float() }

// norm is a standard normal deviate (Box-Muller; math.Log/Sqrt/Cos are exact enough to be stable).
func (r *rng) norm() float64 {
	u := 1 - r.float() // (0, 1]
	v := r.float()
	return math.Sqrt(-2*math.Log(u)) * math.Cos(2*math.Pi*v)
}

// fastNorm is an approximately standard normal deviate (Irwin-Hall sum of four 16-bit uniforms,
// tails cut at +-3.46), for per-pixel noise.
func (r *rng) fastNorm() float64 {
	x := r.uint64()
	s := (x & 0xffff) + (x >> 16 & 0xffff) + (x >> 32 & 0xffff) + (x >> 48)
	return (float64(s)/65536 - 2) * math.Sqrt(3)
}

// chance is true with probability p.
func (r *rng) chance(p float64) bool { return r.float() < p }
