package main

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx"
)

// runCLI runs the hpa root command in-process.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out syncBuffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func tinyPreset(t *testing.T) model.Spec {
	t.Helper()
	s, err := model.Preset("seresnext_tiny")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestModelExportWritesManifestAndMembers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "set")
	out, err := runCLI(t, "model", "export", "--arch", "seresnext_tiny", "--out", dir, "--members", "2", "--size", "64", "--seed", "3", "--stem", "conv")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	m, err := model.ReadManifest(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	spec := tinyPreset(t)
	spec.Stem = model.StemConv
	if m.Schema != 1 || m.Arch.Name != "seresnext_tiny" || m.Arch.Stem != model.StemConv || m.InputSize != 64 ||
		!slices.Equal(m.ChannelOrder, []string{"red", "green", "blue", "yellow"}) ||
		!slices.Equal(m.ClassNames, labels.ClassNames[:]) || m.InputName != "input" || m.OutputName != "logits" ||
		m.TTAViews != 8 || m.Thresholds.Mode != "uniform" || m.Thresholds.Uniform != 0.2 ||
		!slices.Equal(m.Normalization.Mean, model.DefaultNormalization(4).Mean) {
		t.Fatalf("manifest: %+v", m)
	}
	if len(m.Members) != 2 {
		t.Fatalf("%d members", len(m.Members))
	}
	for i, mem := range m.Members {
		if mem.File != []string{"member-00.onnx", "member-01.onnx"}[i] || mem.Fold != i || mem.Snapshot != 0 {
			t.Errorf("member %d: %+v", i, mem)
		}
		p := filepath.Join(dir, mem.File)
		if sum, err := model.FileSHA256(p); err != nil || sum != mem.SHA256 {
			t.Errorf("member %d sha256 %s, manifest %s (%v)", i, sum, mem.SHA256, err)
		}
		// Member i holds the init of seed 3+i.
		got, err := onnx.ReadInitializersFile(p)
		if err != nil {
			t.Fatal(err)
		}
		want := model.InitWeights(spec, 3+int64(i))
		for _, n := range []string{"conv1.weight", "maxpool.0.weight", "layer4.0.se.fc2.weight", "fc.weight"} {
			if !slices.Equal(got[n], want[n]) {
				t.Errorf("member %d %s is not seed %d's init", i, n, 3+i)
			}
		}
	}
	if m.Members[0].SHA256 == m.Members[1].SHA256 {
		t.Error("both members are identical")
	}
	if !strings.Contains(out, "manifest.json") || !strings.Contains(out, "2 members") {
		t.Errorf("output: %s", out)
	}
}

func TestModelExportFromSafetensors(t *testing.T) {
	src := tinyPreset(t)
	src.InChans, src.NumClasses = 3, 1000
	sw := model.InitWeights(src, 77)
	ts, err := model.SafetensorsFromWeights(src, sw)
	if err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(t.TempDir(), "imagenet.safetensors")
	if err := model.WriteSafetensors(ckpt, ts, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, err := runCLI(t, "model", "export", "--arch", "seresnext_tiny", "--out", dir, "--size", "64", "--weights", ckpt, "--seed", "4")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "3 to 4 input channels") || !strings.Contains(out, "1000 classes") {
		t.Errorf("adaptation not reported: %s", out)
	}
	got, err := onnx.ReadInitializersFile(filepath.Join(dir, "member-00.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got["layer2.0.conv2.weight"], sw["layer2.0.conv2.weight"]) {
		t.Error("backbone not taken from the checkpoint")
	}
	if !slices.Equal(got["fc.weight"], model.InitWeights(tinyPreset(t), 4)["fc.weight"]) {
		t.Error("classifier is not the seeded init")
	}
	c := got["conv1.weight"]
	mean := (float64(sw["conv1.weight"][0]) + float64(sw["conv1.weight"][49]) + float64(sw["conv1.weight"][98])) / 3
	for i := 0; i < 4; i++ {
		if math.Abs(float64(c[i*49])-mean) > 1e-7 {
			t.Errorf("conv1.weight[0,%d,0,0] = %g, want RGB mean %g", i, c[i*49], mean)
		}
	}
}

func TestModelExportEnvironment(t *testing.T) {
	t.Setenv("HPA_MODEL_EXPORT_SEED", "9")
	t.Setenv("HPA_MODEL_EXPORT_SIZE", "48")
	dir := t.TempDir()
	if out, err := runCLI(t, "model", "export", "--arch", "seresnext_tiny", "--out", dir, "--size", "64"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	m, err := model.ReadManifest(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m.InputSize != 64 {
		t.Errorf("flag --size lost to the environment: %d", m.InputSize)
	}
	got, err := onnx.ReadInitializersFile(filepath.Join(dir, "member-00.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got["conv1.weight"], model.InitWeights(tinyPreset(t), 9)["conv1.weight"]) {
		t.Error("HPA_MODEL_EXPORT_SEED ignored")
	}
}

func TestModelExportErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--arch", "resnet9000", "--out", dir}, "unknown architecture"},
		{[]string{"--arch", "seresnext_tiny"}, "--out is required"},
		{[]string{"--arch", "seresnext_tiny", "--out", dir, "--stem", "pool"}, "stem must be"},
		{[]string{"--arch", "seresnext_tiny", "--out", dir, "--members", "0"}, "--members 0"},
		{[]string{"--arch", "seresnext_tiny", "--out", dir, "--size", "8"}, "--size 8"},
		{[]string{"--arch", "seresnext_tiny", "--out", dir, "--size", "64", "--weights", filepath.Join(dir, "none.safetensors")}, "none.safetensors"},
	} {
		out, err := runCLI(t, append([]string{"model", "export"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q (output %s)", c.args, err, c.want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
		t.Error("a failed export left a manifest")
	}
}

func TestModelInfo(t *testing.T) {
	dir := t.TempDir()
	if out, err := runCLI(t, "model", "export", "--arch", "seresnext_tiny", "--out", dir, "--members", "2", "--size", "64"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	params := tinyPreset(t).ParamCount()
	out, err := runCLI(t, "model", "info", filepath.Join(dir, "member-01.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"arch seresnext_tiny", "parameters " + strconv.Itoa(params), "input  input FLOAT[batch, 4, 64, 64]", "output logits FLOAT[batch, 28]", "opset 17"} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
	manifest := filepath.Join(dir, "manifest.json")
	out, err = runCLI(t, "model", "info", manifest)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.Count(out, "sha256 ok") != 2 || !strings.Contains(out, "red/green/blue/yellow") {
		t.Errorf("manifest info:\n%s", out)
	}
	// A member changed after export fails verification, naming the file.
	p := filepath.Join(dir, "member-01.onnx")
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o644)
	out, err = runCLI(t, "model", "info", manifest)
	var me *onnx.MemberError
	if !errors.As(err, &me) || len(me.Problems) != 1 || !strings.Contains(err.Error(), "member-01.onnx") || !strings.Contains(out, "SHA256 MISMATCH") {
		t.Errorf("corrupt member: %v\n%s", err, out)
	}
	os.Remove(filepath.Join(dir, "member-00.onnx"))
	if _, err = runCLI(t, "model", "info", manifest); !errors.As(err, &me) || len(me.Problems) != 2 {
		t.Errorf("missing member: %v", err)
	}
	// Not a model, not a manifest.
	junk := filepath.Join(dir, "junk.onnx")
	os.WriteFile(junk, []byte("\xff\xfe garbage"), 0o644)
	if _, err := runCLI(t, "model", "info", junk); err == nil || !strings.Contains(err.Error(), junk) {
		t.Errorf("junk: %v", err)
	}
	if _, err := runCLI(t, "model", "info", filepath.Join(dir, "absent.onnx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent: %v", err)
	}
}
