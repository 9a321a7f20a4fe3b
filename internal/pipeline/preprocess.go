package pipeline

import (
	"fmt"
	"math"
)

// Norm is the per-input-channel normalization x = (p/255 - Mean[c]) / Std[c] (model manifests carry it).
type Norm struct {
	Mean []float32
	Std  []float32
}

// PreprocessError reports a sample or a setting that cannot become a model input.
type PreprocessError struct {
	SampleID string
	Reason   string
}

func (e *PreprocessError) Error() string {
	return fmt.Sprintf("preprocess %s: %s", e.SampleID, e.Reason)
}

// ParseChannelOrder maps manifest channel names ("red", "green", "blue", "yellow") to Channels.
func ParseChannelOrder(names []string) ([]Channel, error) {
	if len(names) == 0 {
		return nil, &PreprocessError{"", "empty channel order"}
	}
	out := make([]Channel, len(names))
	for i, n := range names {
		found := false
		for c, cn := range ChannelNames {
			if n == cn {
				out[i], found = Channel(c), true
				break
			}
		}
		if !found {
			return nil, &PreprocessError{"", fmt.Sprintf("channel_order entry %d %q is not one of red, green, blue, yellow", i, n)}
		}
	}
	return out, nil
}

// normLUT is the normalized value of every 8-bit level, for one channel.
type normLUT [256]float32

func makeLUT(mean, std float32) normLUT {
	var l normLUT
	for p := range l {
		l[p] = float32((float64(p)/255 - float64(mean)) / float64(std))
	}
	return l
}

// CHWSize is the number of values ToCHW writes for len(order) channels at size x size.
func CHWSize(order []Channel, size int) int { return len(order) * size * size }

// ToCHW writes the model input of one sample into dst (at least CHWSize values): the planes in order,
// each resized to size x size (pipeline.Resize; planes already that size are used as they are), each
// pixel normalized as (p/255 - norm.Mean[i]) / norm.Std[i], channel-major (C x H x W), row-major.
func ToCHW(img Image4, size int, order []Channel, norm Norm, dst []float32) error {
	bad := func(format string, args ...any) error {
		return &PreprocessError{img.ID, fmt.Sprintf(format, args...)}
	}
	if size <= 0 {
		return bad("input size %d is not positive", size)
	}
	if len(order) == 0 || len(norm.Mean) != len(order) || len(norm.Std) != len(order) {
		return bad("%d channels with %d means and %d stds", len(order), len(norm.Mean), len(norm.Std))
	}
	plane := size * size
	if len(dst) < len(order)*plane {
		return bad("destination holds %d values, %d channels of %dx%d need %d", len(dst), len(order), size, size, len(order)*plane)
	}
	for i, c := range order {
		if c < Red || c > Yellow {
			return bad("channel %d in order position %d", int(c), i)
		}
		std, mean := norm.Std[i], norm.Mean[i]
		if !(std > 0) || math.IsInf(float64(std), 0) || math.IsNaN(float64(mean)) || math.IsInf(float64(mean), 0) {
			return bad("channel %s normalization mean %v std %v (std must be positive, both finite)", c, mean, std)
		}
		p := img.Planes[c]
		if p.W <= 0 || p.H <= 0 || len(p.Pix) != p.W*p.H {
			return bad("%s plane is %dx%d with %d pixels", c, p.W, p.H, len(p.Pix))
		}
		if p.W != size || p.H != size {
			p = Resize(p, size, size)
			if p.W != size || p.H != size || len(p.Pix) != plane {
				return bad("%s plane resized to %dx%d with %d pixels, want %dx%d", c, p.W, p.H, len(p.Pix), size, size)
			}
		}
		lut := makeLUT(mean, std)
		out := dst[i*plane : (i+1)*plane]
		for j, v := range p.Pix {
			out[j] = lut[v]
		}
	}
	return nil
}

// ApplyFloat normalizes a C x S x S tensor of intensities already scaled to [0,1] (p/255, e.g. after
// training augmentations) in place: x = (x - Mean[c]) / Std[c], the same mapping as ToCHW.
func (n Norm) ApplyFloat(x []float32, c, s int) error {
	if len(n.Mean) < c || len(n.Std) < c || len(x) != c*s*s {
		return &PreprocessError{"", fmt.Sprintf("normalization of %d channels for a %d-value tensor of %d x %d x %d", len(n.Mean), len(x), c, s, s)}
	}
	plane := s * s
	for ch := 0; ch < c; ch++ {
		m, sd := n.Mean[ch], n.Std[ch]
		p := x[ch*plane : (ch+1)*plane]
		for i, v := range p {
			p[i] = (v - m) / sd
		}
	}
	return nil
}
