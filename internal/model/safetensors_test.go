package model

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeRaw writes a safetensors file by hand: header JSON, then the data bytes.
func writeRaw(t *testing.T, header map[string]any, data []byte) string {
	t.Helper()
	hj, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hj)))
	b = append(append(b, hj...), data...)
	p := filepath.Join(t.TempDir(), "x.safetensors")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadSafetensorsDTypes(t *testing.T) {
	var data []byte
	// F32 [2]: 1.5, -2
	for _, x := range []float32{1.5, -2} {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(x))
	}
	// F16 [2,2]: 1, -2.5, 65504 (max), 2^-24 (smallest subnormal)
	for _, h := range []uint16{0x3c00, 0xc100, 0x7bff, 0x0001} {
		data = binary.LittleEndian.AppendUint16(data, h)
	}
	// BF16 [3]: 1, -3, 0.15625
	for _, x := range []float32{1, -3, 0.15625} {
		data = binary.LittleEndian.AppendUint16(data, uint16(math.Float32bits(x)>>16))
	}
	p := writeRaw(t, map[string]any{
		"__metadata__": map[string]string{"format": "pt"},
		"a":            map[string]any{"dtype": "F32", "shape": []int{2}, "data_offsets": []int{0, 8}},
		"h":            map[string]any{"dtype": "F16", "shape": []int{2, 2}, "data_offsets": []int{8, 16}},
		"b":            map[string]any{"dtype": "BF16", "shape": []int{3}, "data_offsets": []int{16, 22}},
	}, data)
	got, err := ReadSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d tensors", len(got))
	}
	want := map[string]Tensor{
		"a": {Shape: []int{2}, Data: []float32{1.5, -2}},
		"h": {Shape: []int{2, 2}, Data: []float32{1, -2.5, 65504, float32(math.Ldexp(1, -24))}},
		"b": {Shape: []int{3}, Data: []float32{1, -3, 0.15625}},
	}
	for n, w := range want {
		if !slices.Equal(got[n].Shape, w.Shape) || !slices.Equal(got[n].Data, w.Data) {
			t.Errorf("%s = %+v, want %+v", n, got[n], w)
		}
	}
}

func TestHalfToFloatSpecials(t *testing.T) {
	if v := halfToFloat(0x7c00); !math.IsInf(float64(v), 1) {
		t.Errorf("+Inf -> %g", v)
	}
	if v := halfToFloat(0x7e00); !math.IsNaN(float64(v)) {
		t.Errorf("NaN -> %g", v)
	}
	if v := halfToFloat(0x8000); v != 0 || !math.Signbit(float64(v)) {
		t.Errorf("-0 -> %g", v)
	}
	if v := halfToFloat(0x3555); math.Abs(float64(v)-0.333251953125) > 0 {
		t.Errorf("0x3555 -> %g", v)
	}
}

func TestReadSafetensorsBadInput(t *testing.T) {
	f32 := func(n int) []byte { return make([]byte, 4*n) }
	cases := []struct {
		name, want, tensor string
		file               func(t *testing.T) string
	}{
		{"short", "too short", "", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "s.safetensors")
			os.WriteFile(p, []byte{1, 2, 3}, 0o644)
			return p
		}},
		{"huge header", "header length", "", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "h.safetensors")
			os.WriteFile(p, binary.LittleEndian.AppendUint64(nil, 1<<40), 0o644)
			return p
		}},
		{"header past end", "exceeds the file", "", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "e.safetensors")
			os.WriteFile(p, append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...), 0o644)
			return p
		}},
		{"not json", "not a JSON object", "", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "j.safetensors")
			os.WriteFile(p, append(binary.LittleEndian.AppendUint64(nil, 4), "[1,2"...), 0o644)
			return p
		}},
		{"dtype", "not supported", "x", func(t *testing.T) string {
			return writeRaw(t, map[string]any{"x": map[string]any{"dtype": "I64", "shape": []int{1}, "data_offsets": []int{0, 8}}}, f32(2))
		}},
		{"out of range", "outside", "x", func(t *testing.T) string {
			return writeRaw(t, map[string]any{"x": map[string]any{"dtype": "F32", "shape": []int{4}, "data_offsets": []int{0, 16}}}, f32(2))
		}},
		{"size", "want 12", "x", func(t *testing.T) string {
			return writeRaw(t, map[string]any{"x": map[string]any{"dtype": "F32", "shape": []int{3}, "data_offsets": []int{0, 8}}}, f32(2))
		}},
		{"overlap", "overlaps", "y", func(t *testing.T) string {
			return writeRaw(t, map[string]any{
				"x": map[string]any{"dtype": "F32", "shape": []int{2}, "data_offsets": []int{0, 8}},
				"y": map[string]any{"dtype": "F32", "shape": []int{2}, "data_offsets": []int{4, 12}},
			}, f32(3))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.file(t)
			_, err := ReadSafetensors(p)
			var se *SafetensorsError
			if !errors.As(err, &se) {
				t.Fatalf("want *SafetensorsError, got %v", err)
			}
			if se.Path != p || se.Tensor != c.tensor || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %q (tensor %q): want %q about tensor %q of %s", err, se.Tensor, c.want, c.tensor, p)
			}
		})
	}
	if _, err := ReadSafetensors(filepath.Join(t.TempDir(), "missing.safetensors")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestWriteSafetensorsRoundTrip(t *testing.T) {
	s := tinySpec(t)
	w := InitWeights(s, 3)
	ts, err := SafetensorsFromWeights(s, w)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "w.safetensors")
	if err := WriteSafetensors(p, ts, map[string]string{"arch": s.Name}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if n := binary.LittleEndian.Uint64(b); n%8 != 0 {
		t.Errorf("header length %d not 8-aligned", n)
	}
	back, rep, err := WeightsFromSafetensors(p, s, 99)
	if err != nil {
		t.Fatal(err)
	}
	if rep.StemAdapted || rep.ClassifierReplaced || len(rep.Missing) > 0 || len(rep.Unknown) > 0 || rep.Loaded != len(w) {
		t.Fatalf("same-arch load reported changes: %s", rep)
	}
	for n, v := range w {
		if !slices.Equal(v, back[n]) {
			t.Fatalf("%s changed in the round trip", n)
		}
	}
	if err := WriteSafetensors(p, map[string]Tensor{"x": {Shape: []int{3}, Data: []float32{1}}}, nil); err == nil {
		t.Fatal("inconsistent shape written")
	}
}

// An ImageNet-style checkpoint: the tiny arch with 3 input channels and 1000 classes, plus the
// extras real timm checkpoints carry.
func imagenetCheckpoint(t *testing.T) (string, Weights) {
	t.Helper()
	src := tinySpec(t)
	src.InChans, src.NumClasses = 3, 1000
	w := InitWeights(src, 42)
	ts, err := SafetensorsFromWeights(src, w)
	if err != nil {
		t.Fatal(err)
	}
	ts["bn1.num_batches_tracked"] = Tensor{Shape: []int{}, Data: []float32{7}}
	ts["head.extra.weight"] = Tensor{Shape: []int{2}, Data: []float32{1, 2}}
	delete(ts, "layer3.0.se.fc2.bias")
	p := filepath.Join(t.TempDir(), "imagenet.safetensors")
	if err := WriteSafetensors(p, ts, nil); err != nil {
		t.Fatal(err)
	}
	return p, w
}

func TestWeightsFromSafetensorsAdapts(t *testing.T) {
	p, src := imagenetCheckpoint(t)
	spec := tinySpec(t) // 4 channels, 28 classes
	w, rep, err := WeightsFromSafetensors(p, spec, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Check(spec); err != nil {
		t.Fatal(err)
	}
	if !rep.StemAdapted || rep.StemFrom != 3 || rep.StemTo != 4 {
		t.Errorf("stem not reported: %s", rep)
	}
	if !rep.ClassifierReplaced || rep.ClassesFrom != 1000 || rep.ClassesTo != 28 {
		t.Errorf("classifier not reported: %s", rep)
	}
	if !slices.Equal(rep.Missing, []string{"layer3.0.se.fc2.bias"}) || !slices.Equal(rep.Unknown, []string{"head.extra.weight"}) {
		t.Errorf("missing/unknown: %s", rep)
	}
	for _, part := range []string{"3 to 4 input channels", "1000 classes", "layer3.0.se.fc2.bias", "head.extra.weight"} {
		if !strings.Contains(rep.String(), part) {
			t.Errorf("report %q lacks %q", rep, part)
		}
	}
	// Stem: out channel o, input channel i, tap k = mean over RGB of the source.
	sw, dw := src["conv1.weight"], w["conv1.weight"]
	const kk = 49
	for o := 0; o < spec.StemWidth; o++ {
		for k := 0; k < kk; k++ {
			m := (float64(sw[(o*3+0)*kk+k]) + float64(sw[(o*3+1)*kk+k]) + float64(sw[(o*3+2)*kk+k])) / 3
			for i := 0; i < 4; i++ {
				if d := math.Abs(float64(dw[(o*4+i)*kk+k]) - m); d > 1e-7 {
					t.Fatalf("conv1.weight[%d,%d,%d] = %g, want RGB mean %g", o, i, k, dw[(o*4+i)*kk+k], m)
				}
			}
		}
	}
	// Classifier: the seeded init of the target spec, not the checkpoint's.
	fresh := InitWeights(spec, 5)
	if !slices.Equal(w["fc.weight"], fresh["fc.weight"]) || !slices.Equal(w["fc.bias"], fresh["fc.bias"]) {
		t.Error("classifier is not the seeded init")
	}
	if !slices.Equal(w["layer3.0.se.fc2.bias"], fresh["layer3.0.se.fc2.bias"]) {
		t.Error("missing tensor is not the seeded init")
	}
	// Everything else is the checkpoint's.
	for _, n := range []string{"bn1.running_var", "layer2.0.conv2.weight", "layer4.0.downsample.0.weight", "layer1.0.se.fc1.bias"} {
		if !slices.Equal(w[n], src[n]) {
			t.Errorf("%s not loaded from the checkpoint", n)
		}
	}
}

func TestWeightsFromSafetensorsShapeMismatch(t *testing.T) {
	s := tinySpec(t)
	ts, err := SafetensorsFromWeights(s, InitWeights(s, 1))
	if err != nil {
		t.Fatal(err)
	}
	ts["layer2.0.conv1.weight"] = Tensor{Shape: []int{8, 64, 1, 1}, Data: make([]float32, 8*64)}
	p := filepath.Join(t.TempDir(), "bad.safetensors")
	if err := WriteSafetensors(p, ts, nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = WeightsFromSafetensors(p, s, 1)
	var se *SafetensorsError
	if !errors.Is(err, ErrShapeMismatch) || !errors.As(err, &se) || se.Tensor != "layer2.0.conv1.weight" || se.Path != p {
		t.Fatalf("want a shape mismatch naming layer2.0.conv1.weight in %s, got %v", p, err)
	}
}
