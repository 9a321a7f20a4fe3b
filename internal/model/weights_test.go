package model

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func tinySpec(t *testing.T) Spec {
	t.Helper()
	s, err := Preset("seresnext_tiny")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInitWeightsDeterministicAndComplete(t *testing.T) {
	s := tinySpec(t)
	a, b, c := InitWeights(s, 7), InitWeights(s, 7), InitWeights(s, 8)
	if err := a.Check(s); err != nil {
		t.Fatalf("fresh weights fail Check: %v", err)
	}
	n := 0
	for _, ts := range s.Tensors() {
		if ts.Kind == Param {
			n += len(a[ts.Name])
		}
	}
	if n != s.ParamCount() {
		t.Fatalf("params %d, spec says %d", n, s.ParamCount())
	}
	for name, v := range a {
		if !slices.Equal(v, b[name]) {
			t.Fatalf("%s differs between two inits with the same seed", name)
		}
	}
	if slices.Equal(a["conv1.weight"], c["conv1.weight"]) || slices.Equal(a["fc.weight"], c["fc.weight"]) {
		t.Fatal("another seed gives the same weights")
	}
	one, err := InitTensor(s, "layer2.0.se.fc1.bias", 7)
	if err != nil || !slices.Equal(one, a["layer2.0.se.fc1.bias"]) {
		t.Fatalf("InitTensor disagrees with InitWeights (err %v)", err)
	}
	if _, err := InitTensor(s, "nope.weight", 7); err == nil {
		t.Fatal("InitTensor accepted an unknown name")
	}
	// A tensor's init does not depend on the rest of the architecture.
	s2 := s
	s2.NumClasses = 5
	if !slices.Equal(InitWeights(s2, 7)["layer1.0.conv2.weight"], a["layer1.0.conv2.weight"]) {
		t.Fatal("conv init changed with the class count")
	}
}

func stats(v []float32) (mean, std, lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range v {
		mean += float64(x)
		lo, hi = math.Min(lo, float64(x)), math.Max(hi, float64(x))
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (float64(x) - mean) * (float64(x) - mean)
	}
	return mean, math.Sqrt(std / float64(len(v))), lo, hi
}

func TestInitWeightsFollowsTimm(t *testing.T) {
	s, err := Preset("seresnext26_32x4d") // big enough tensors for tight statistics
	if err != nil {
		t.Fatal(err)
	}
	w := InitWeights(s, 1)
	// kaiming_normal fan_out relu: std = sqrt(2 / (out * k * k)); grouped convs count all outputs.
	for _, c := range []struct {
		name   string
		fanOut int
	}{
		{"conv1.weight", 64 * 49},
		{"layer3.0.conv2.weight", 512 * 9},
		{"layer4.1.conv3.weight", 2048},
		{"layer2.0.se.fc1.weight", 32},
		{"layer2.0.downsample.0.weight", 512},
	} {
		mean, std, _, _ := stats(w[c.name])
		want := math.Sqrt(2 / float64(c.fanOut))
		if math.Abs(std-want) > 0.05*want || math.Abs(mean) > 0.05*want {
			t.Errorf("%s: mean %.4g std %.4g, want 0 / %.4g", c.name, mean, std, want)
		}
	}
	uniformCheck := func(name string, fanIn int) {
		_, std, lo, hi := stats(w[name])
		b := 1 / math.Sqrt(float64(fanIn))
		if lo < -b || hi > b || std < 0.5*b/math.Sqrt(3) || std > 1.5*b/math.Sqrt(3) {
			t.Errorf("%s: range [%.4g, %.4g] std %.4g, want uniform +-%.4g", name, lo, hi, std, b)
		}
	}
	uniformCheck("fc.weight", 2048)
	uniformCheck("fc.bias", 2048)
	uniformCheck("layer1.0.se.fc1.bias", 256)
	uniformCheck("layer1.0.se.fc2.bias", 16)
	for name, want := range map[string]float32{
		"bn1.weight": 1, "bn1.bias": 0, "bn1.running_mean": 0, "bn1.running_var": 1,
		"layer4.2.bn3.weight": 1, "layer4.0.downsample.1.bias": 0,
	} {
		for i, x := range w[name] {
			if x != want {
				t.Fatalf("%s[%d] = %g, want %g", name, i, x, want)
			}
		}
	}
}

func TestWeightsCheckErrors(t *testing.T) {
	s := tinySpec(t)
	w := InitWeights(s, 1)
	if err := w.Check(s); err != nil {
		t.Fatal(err)
	}
	w["bn1.num_batches_tracked"] = []float32{3}
	if err := w.Check(s); err != nil {
		t.Fatalf("num_batches_tracked rejected: %v", err)
	}
	bad := w.Clone()
	delete(bad, "layer1.0.conv2.weight")
	bad["fc.bias"] = bad["fc.bias"][:3]
	bad["head.weight"] = []float32{1}
	bad["bn1.running_var"][2] = float32(math.NaN())
	err := bad.Check(s)
	var we *WeightsError
	if !errors.As(err, &we) {
		t.Fatalf("want *WeightsError, got %v", err)
	}
	if !slices.Equal(we.Missing, []string{"layer1.0.conv2.weight"}) || len(we.WrongSize) != 1 ||
		!strings.HasPrefix(we.WrongSize[0], "fc.bias") || !slices.Equal(we.Unknown, []string{"head.weight"}) ||
		!slices.Equal(we.NonFinite, []string{"bn1.running_var"}) {
		t.Fatalf("wrong report: %+v", we)
	}
	for _, part := range []string{"seresnext_tiny", "missing", "layer1.0.conv2.weight", "fc.bias", "head.weight", "not finite"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
	// Clone is deep: the original is intact.
	if err := w.Check(s); err != nil {
		t.Fatalf("Clone shared storage: %v", err)
	}
}

// PyTorch's default init: conv/linear weights uniform within +-1/sqrt(fan_in) with the matching
// spread (std = bound/sqrt(3)), biases likewise, BN 1/0.
func TestInitWeightsPyTorch(t *testing.T) {
	s, _ := Preset("seresnext_tiny")
	w := InitWeightsPyTorch(s, 3)
	if err := w.Check(s); err != nil {
		t.Fatal(err)
	}
	check := func(name string, fanIn int) {
		v := w[name]
		bound := 1 / math.Sqrt(float64(fanIn))
		var ss float64
		for _, x := range v {
			if math.Abs(float64(x)) > bound {
				t.Fatalf("%s: %v outside +-%v", name, x, bound)
			}
			ss += float64(x) * float64(x)
		}
		std := math.Sqrt(ss / float64(len(v)))
		if want := bound / math.Sqrt(3); math.Abs(std-want) > 0.1*want {
			t.Errorf("%s: std %v, want %v", name, std, want)
		}
	}
	check("conv1.weight", 4*7*7)
	b := s.Blocks()[1]
	check(b.Prefix+".conv2.weight", b.Width/b.Groups*9)
	check("fc.weight", s.Features())
	check(b.Prefix+".se.fc2.bias", b.SEChannels)
	if w["bn1.weight"][0] != 1 || w["bn1.bias"][0] != 0 || w[b.Prefix+".bn3.weight"][0] != 1 {
		t.Error("BatchNorm must start at weight 1, bias 0")
	}
	if InitWeightsPyTorch(s, 3)["conv1.weight"][5] != w["conv1.weight"][5] || InitWeightsPyTorch(s, 4)["conv1.weight"][5] == w["conv1.weight"][5] {
		t.Error("init must be deterministic in the seed and change with it")
	}
}
