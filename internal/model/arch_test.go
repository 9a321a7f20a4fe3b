package model

import "testing"

func TestSEResNeXt50ParamCount(t *testing.T) {
	s, err := Preset("seresnext50_32x4d")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	// timm seresnext50_32x4d adapted to 4 input channels and 28 classes.
	if got := s.ParamCount(); got != 25571404 {
		t.Fatalf("seresnext50_32x4d params = %d, want 25571404", got)
	}
	// At timm's own 3 channels / 1000 classes the count is timm's published 27,559,896.
	s.InChans, s.NumClasses = 3, 1000
	if got := s.ParamCount(); got != 27559896 {
		t.Fatalf("3ch/1000 params = %d, want 27559896", got)
	}
}

func TestStemConvAddsTimmReplaceStemPool(t *testing.T) {
	a, _ := Preset("seresnext_tiny")
	b := a
	b.Stem = StemConv
	extra := b.ParamCount() - a.ParamCount()
	w := a.StemWidth
	if extra != w*w*9+2*w {
		t.Fatalf("conv stem adds %d params, want %d", extra, w*w*9+2*w)
	}
	names := map[string]bool{}
	for _, ts := range b.Tensors() {
		if names[ts.Name] {
			t.Fatalf("duplicate tensor %s", ts.Name)
		}
		names[ts.Name] = true
	}
	for _, n := range []string{"maxpool.0.weight", "maxpool.1.running_var", "layer1.0.se.fc1.bias", "layer4.0.downsample.1.weight", "fc.bias"} {
		if !names[n] {
			t.Errorf("missing %s", n)
		}
	}
}

func TestPresetsValidate(t *testing.T) {
	for _, n := range PresetNames() {
		s, _ := Preset(n)
		if err := s.Validate(); err != nil {
			t.Error(err)
		}
	}
	if _, err := Preset("resnet9000"); err == nil {
		t.Error("unknown preset must fail")
	}
}

// seresnext_small is the small timm-width SE-ResNeXt: depths 1-1-1-1, stem 64, planes
// 64-128-256-512 x4, cardinality 8, base width 4, SE reduction 16 (count of timm's
// ResNet(Bottleneck, [1,1,1,1], cardinality=8, base_width=4, block_args=dict(attn_layer='se'),
// in_chans=4, num_classes=28)).
func TestSEResNeXtSmallParamCount(t *testing.T) {
	s, err := Preset("seresnext_small")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.ParamCount(); got != 4696972 {
		t.Fatalf("seresnext_small params = %d, want 4696972", got)
	}
	if tiny, _ := Preset("seresnext_tiny"); tiny.ParamCount() != 395228 {
		t.Fatalf("seresnext_tiny params = %d, want 395228", tiny.ParamCount())
	}
}
