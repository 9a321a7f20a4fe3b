// Package model holds the model side of hpa: the SE-ResNeXt architecture spec shared by the ONNX
// writer and the libtorch training backend, weights keyed by timm state-dict names, manifests of
// model sets and the ONNX Runtime ensemble runner.
package model

import (
	"fmt"
	"sort"
	"strings"
)

// Stem selects what follows the 7x7/2 stem convolution.
type Stem string

const (
	// StemMaxPool is timm's default: 3x3/2 max pooling (names conv1, bn1).
	StemMaxPool Stem = "maxpool"
	// StemConv replaces the max pool by a 3x3/2 convolution + BN + ReLU, as in the reference Kaggle
	// recipe; timm's replace_stem_pool names it maxpool.0 (conv) and maxpool.1 (BN).
	StemConv Stem = "conv"
)

// Spec describes one member of the SE-ResNeXt family (timm's ResNet with Bottleneck blocks and
// attn_layer='se'). All fields are plain data so a spec travels in manifests and to the shim as JSON.
type Spec struct {
	Name        string `json:"name"`
	InChans     int    `json:"in_chans"`
	NumClasses  int    `json:"num_classes"`
	Stem        Stem   `json:"stem"`
	StemWidth   int    `json:"stem_width"`
	Depths      []int  `json:"depths"`      // blocks per stage
	Planes      []int  `json:"planes"`      // bottleneck planes per stage (output = planes * Expansion)
	Cardinality int    `json:"cardinality"` // groups of the 3x3 convolution
	BaseWidth   int    `json:"base_width"`  // width per group at planes=64
	Expansion   int    `json:"expansion"`   // 4 for Bottleneck
	SEReduction int    `json:"se_reduction"`
	SEDivisor   int    `json:"se_divisor"` // timm's make_divisible divisor (8)
}

// Presets by name.
var presets = map[string]Spec{
	"seresnext50_32x4d": {
		Name: "seresnext50_32x4d", InChans: 4, NumClasses: 28, Stem: StemMaxPool, StemWidth: 64,
		Depths: []int{3, 4, 6, 3}, Planes: []int{64, 128, 256, 512},
		Cardinality: 32, BaseWidth: 4, Expansion: 4, SEReduction: 16, SEDivisor: 8,
	},
	"seresnext101_32x4d": {
		Name: "seresnext101_32x4d", InChans: 4, NumClasses: 28, Stem: StemMaxPool, StemWidth: 64,
		Depths: []int{3, 4, 23, 3}, Planes: []int{64, 128, 256, 512},
		Cardinality: 32, BaseWidth: 4, Expansion: 4, SEReduction: 16, SEDivisor: 8,
	},
	"seresnext26_32x4d": {
		Name: "seresnext26_32x4d", InChans: 4, NumClasses: 28, Stem: StemMaxPool, StemWidth: 64,
		Depths: []int{2, 2, 2, 2}, Planes: []int{64, 128, 256, 512},
		Cardinality: 32, BaseWidth: 4, Expansion: 4, SEReduction: 16, SEDivisor: 8,
	},
	// A CPU-sized member that learns: timm's widths (stem 64, planes 64-128-256-512 x4, cardinality 8 x
	// base width 4) with one block per stage; 4,696,972 parameters at 4 channels / 28 classes.
	"seresnext_small": {
		Name: "seresnext_small", InChans: 4, NumClasses: 28, Stem: StemMaxPool, StemWidth: 64,
		Depths: []int{1, 1, 1, 1}, Planes: []int{64, 128, 256, 512},
		Cardinality: 8, BaseWidth: 4, Expansion: 4, SEReduction: 16, SEDivisor: 8,
	},
	// A small member for tests and CPU demos: one block per stage, narrow.
	"seresnext_tiny": {
		Name: "seresnext_tiny", InChans: 4, NumClasses: 28, Stem: StemMaxPool, StemWidth: 16,
		Depths: []int{1, 1, 1, 1}, Planes: []int{16, 32, 64, 128},
		Cardinality: 8, BaseWidth: 8, Expansion: 4, SEReduction: 16, SEDivisor: 8,
	},
}

// Preset returns a copy of the named preset.
func Preset(name string) (Spec, error) {
	s, ok := presets[name]
	if !ok {
		return Spec{}, fmt.Errorf("unknown architecture %q (known: %s)", name, strings.Join(PresetNames(), ", "))
	}
	s.Depths = append([]int(nil), s.Depths...)
	s.Planes = append([]int(nil), s.Planes...)
	return s, nil
}

// PresetNames lists the preset names, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate reports an inconsistent spec.
func (s Spec) Validate() error {
	switch {
	case s.InChans <= 0 || s.NumClasses <= 0 || s.StemWidth <= 0:
		return fmt.Errorf("arch %s: in_chans, num_classes and stem_width must be positive", s.Name)
	case s.Stem != StemMaxPool && s.Stem != StemConv:
		return fmt.Errorf("arch %s: stem must be %q or %q, not %q", s.Name, StemMaxPool, StemConv, s.Stem)
	case len(s.Depths) == 0 || len(s.Depths) != len(s.Planes):
		return fmt.Errorf("arch %s: depths and planes must have the same non-zero length", s.Name)
	case s.Cardinality <= 0 || s.BaseWidth <= 0 || s.Expansion <= 0 || s.SEReduction <= 0 || s.SEDivisor <= 0:
		return fmt.Errorf("arch %s: cardinality, base_width, expansion, se_reduction, se_divisor must be positive", s.Name)
	}
	for i := range s.Depths {
		if s.Depths[i] <= 0 || s.Planes[i] <= 0 {
			return fmt.Errorf("arch %s: stage %d has a non-positive depth or planes", s.Name, i+1)
		}
		if s.width(s.Planes[i])%s.Cardinality != 0 || s.width(s.Planes[i]) == 0 {
			return fmt.Errorf("arch %s: stage %d width is not a positive multiple of cardinality", s.Name, i+1)
		}
	}
	return nil
}

func (s Spec) width(planes int) int { return (planes * s.BaseWidth / 64) * s.Cardinality }

// makeDivisible is timm's make_divisible(v, divisor, round_limit=0).
func makeDivisible(v float64, divisor int) int {
	n := int(v+float64(divisor)/2) / divisor * divisor
	if n < divisor {
		n = divisor
	}
	return n
}

// Block is one bottleneck block, fully resolved.
type Block struct {
	Prefix     string `json:"prefix"` // "layer2.0"
	In         int    `json:"in"`
	Width      int    `json:"width"` // channels of conv1/conv2
	Out        int    `json:"out"`
	Stride     int    `json:"stride"` // on conv2 (3x3), as timm
	Groups     int    `json:"groups"`
	SEChannels int    `json:"se_channels"` // reduced channels of the SE module
	Downsample bool   `json:"downsample"`  // 1x1 conv (stride) + BN on the shortcut
}

// Blocks resolves the spec into its blocks, in forward order.
func (s Spec) Blocks() []Block {
	var out []Block
	in := s.StemWidth
	for st, depth := range s.Depths {
		planes := s.Planes[st]
		for b := 0; b < depth; b++ {
			stride := 1
			if b == 0 && st > 0 {
				stride = 2
			}
			o := planes * s.Expansion
			out = append(out, Block{
				Prefix: fmt.Sprintf("layer%d.%d", st+1, b),
				In:     in, Width: s.width(planes), Out: o, Stride: stride, Groups: s.Cardinality,
				SEChannels: makeDivisible(float64(o)/float64(s.SEReduction), s.SEDivisor),
				Downsample: b == 0 && (stride != 1 || in != o),
			})
			in = o
		}
	}
	return out
}

// Features is the channel count entering the classifier.
func (s Spec) Features() int { return s.Planes[len(s.Planes)-1] * s.Expansion }

// TensorKind separates trainable parameters from BatchNorm buffers.
type TensorKind int

const (
	Param       TensorKind = iota // trainable
	RunningMean                   // BN buffer
	RunningVar                    // BN buffer
	NumBatches                    // BN num_batches_tracked (int64 scalar in PyTorch)
)

// TensorSpec is one state-dict entry.
type TensorSpec struct {
	Name  string     `json:"name"`
	Shape []int      `json:"shape"`
	Kind  TensorKind `json:"kind"`
}

// Size is the element count.
func (t TensorSpec) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Tensors lists the state dict in timm's order (module registration order), with timm's names.
func (s Spec) Tensors() []TensorSpec {
	var ts []TensorSpec
	conv := func(name string, out, in, k int) {
		ts = append(ts, TensorSpec{Name: name + ".weight", Shape: []int{out, in, k, k}})
	}
	bn := func(name string, c int) {
		ts = append(ts,
			TensorSpec{Name: name + ".weight", Shape: []int{c}},
			TensorSpec{Name: name + ".bias", Shape: []int{c}},
			TensorSpec{Name: name + ".running_mean", Shape: []int{c}, Kind: RunningMean},
			TensorSpec{Name: name + ".running_var", Shape: []int{c}, Kind: RunningVar},
			TensorSpec{Name: name + ".num_batches_tracked", Shape: []int{}, Kind: NumBatches},
		)
	}
	conv("conv1", s.StemWidth, s.InChans, 7)
	bn("bn1", s.StemWidth)
	if s.Stem == StemConv {
		conv("maxpool.0", s.StemWidth, s.StemWidth, 3)
		bn("maxpool.1", s.StemWidth)
	}
	for _, b := range s.Blocks() {
		p := b.Prefix
		conv(p+".conv1", b.Width, b.In, 1)
		bn(p+".bn1", b.Width)
		conv(p+".conv2", b.Width, b.Width/b.Groups, 3)
		bn(p+".bn2", b.Width)
		conv(p+".conv3", b.Out, b.Width, 1)
		bn(p+".bn3", b.Out)
		ts = append(ts,
			TensorSpec{Name: p + ".se.fc1.weight", Shape: []int{b.SEChannels, b.Out, 1, 1}},
			TensorSpec{Name: p + ".se.fc1.bias", Shape: []int{b.SEChannels}},
			TensorSpec{Name: p + ".se.fc2.weight", Shape: []int{b.Out, b.SEChannels, 1, 1}},
			TensorSpec{Name: p + ".se.fc2.bias", Shape: []int{b.Out}},
		)
		if b.Downsample {
			conv(p+".downsample.0", b.Out, b.In, 1)
			bn(p+".downsample.1", b.Out)
		}
	}
	ts = append(ts,
		TensorSpec{Name: "fc.weight", Shape: []int{s.NumClasses, s.Features()}},
		TensorSpec{Name: "fc.bias", Shape: []int{s.NumClasses}},
	)
	return ts
}

// ParamCount counts trainable parameters (what timm's sum(p.numel() for p in parameters()) gives).
func (s Spec) ParamCount() int {
	n := 0
	for _, t := range s.Tensors() {
		if t.Kind == Param {
			n += t.Size()
		}
	}
	return n
}
