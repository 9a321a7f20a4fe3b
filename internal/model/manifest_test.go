package model

import (
	"strings"
	"testing"
)

func validManifest(t *testing.T) *Manifest {
	t.Helper()
	spec, err := Preset("seresnext_tiny")
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, spec.NumClasses)
	for i := range names {
		names[i] = "c"
	}
	return &Manifest{
		Schema: ManifestSchema, Name: "m", Version: "v", Arch: spec, InputSize: 64,
		ChannelOrder:  []string{"red", "green", "blue", "yellow"},
		Normalization: Normalization{Mean: []float32{0.1, 0.1, 0.1, 0.1}, Std: []float32{0.2, 0.2, 0.2, 0.2}},
		ClassNames:    names, InputName: "input", OutputName: "logits", TTAViews: 8,
		Thresholds: Thresholds{Mode: "uniform", Uniform: 0.4},
		Members:    []Member{{File: "members/fold0_cycle0.onnx", SHA256: "x"}},
	}
}

// A member's own thresholds (chosen on its OOF predictions) are optional; when present they are
// checked like the ensemble's, and the error names the member.
func TestManifestMemberThresholds(t *testing.T) {
	m := validManifest(t)
	if err := m.Validate(); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	m.Members[0].Thresholds = &Thresholds{Mode: "per_class", PerClass: make([]float64, m.Arch.NumClasses)}
	if err := m.Validate(); err != nil {
		t.Fatalf("member with per-class thresholds: %v", err)
	}
	m.Members[0].Thresholds.PerClass = m.Members[0].Thresholds.PerClass[:3]
	err := m.Validate()
	if err == nil || !strings.Contains(err.Error(), "member members/fold0_cycle0.onnx") || !strings.Contains(err.Error(), "need 28 values") {
		t.Errorf("short member thresholds: %v", err)
	}
	m.Members[0].Thresholds = &Thresholds{Mode: "bogus"}
	if err := m.Validate(); err == nil || !strings.Contains(err.Error(), `unknown threshold mode "bogus"`) {
		t.Errorf("unknown member mode: %v", err)
	}
	m.Members[0].Thresholds = nil
	m.Thresholds = Thresholds{Mode: "rate"}
	if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "manifest m: rate thresholds need 28 values") {
		t.Errorf("ensemble rate thresholds without values: %v", err)
	}
}
