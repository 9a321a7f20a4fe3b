package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/benchtrain"
	"github.com/hpa-plates/hpa/internal/model"
)

// hpa bench train with tiny settings prints both ratios with verdicts and the parameter check.
func TestBenchTrain(t *testing.T) {
	lib := torchShim(t)
	script, err := filepath.Abs(filepath.Join("..", "..", benchtrain.DefaultScript))
	if err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "bench", "train", "--library", lib, "--script", script, "--size", "64", "--batch", "2",
		"--steps", "2", "--warmup", "1", "--rounds", "1", "--samples", "4", "--synth-size", "64", "--workers", "2")
	var pe *benchtrain.PythonError
	if errors.As(err, &pe) && pe.Kind == "no_torch" {
		if !strings.Contains(err.Error(), "python3-torch") {
			t.Errorf("no-torch error does not say what to install: %v", err)
		}
		if os.Getenv("CI") == "" {
			t.Skipf("%v; CI unset, so skipping", err)
		}
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	spec, _ := model.Preset("seresnext_tiny")
	for _, want := range []string{
		"synthesized 4 samples (64x64 px)",
		"seresnext_tiny 64px batch 2, 1 threads, 1 rounds x 2 steps",
		"allocator tcmalloc (tcmalloc mapped: true)",
		"(tcmalloc mapped: true), in-place ReLU: true",
		"python module " + strconv.Itoa(spec.ParamCount()) + " (match)",
		"ratio 1  train step go/python (CPU time) ",
		"ratio 2  loader/step samples/s (together) ",
		"decode, with the step running",
		"decode (4 samples, 2 wk)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "ratio ") && !strings.Contains(line, "PASS") && !strings.Contains(line, "FAIL") {
			t.Errorf("ratio line without a verdict: %q", line)
		}
	}
}

func TestBenchTrainBadInput(t *testing.T) {
	if _, err := runCLI(t, "bench", "train", "--arch", "resnet9000"); err == nil || !strings.Contains(err.Error(), "resnet9000") {
		t.Errorf("unknown arch: %v", err)
	}
	if _, err := runCLI(t, "bench", "train", "--stem", "pyramid"); err == nil || !strings.Contains(err.Error(), "pyramid") {
		t.Errorf("unknown stem: %v", err)
	}
	var oe *benchtrain.OptionsError
	if _, err := runCLI(t, "bench", "train", "--steps", "0"); !errors.As(err, &oe) {
		t.Errorf("steps 0: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "libhpatorch.so")
	if _, err := runCLI(t, "bench", "train", "--library", missing, "--tcmalloc", "/x.so"); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing shim: %v", err)
	}
	lib := torchShim(t)
	py := filepath.Join(t.TempDir(), "python9")
	_, err := runCLI(t, "bench", "train", "--library", lib, "--python", py, "--script", "../../"+benchtrain.DefaultScript,
		"--size", "64", "--batch", "2", "--steps", "1", "--warmup", "0", "--rounds", "1", "--samples", "2", "--synth-size", "64")
	var pe *benchtrain.PythonError
	if !errors.As(err, &pe) || pe.Kind != "no_python" || !strings.Contains(err.Error(), py) {
		t.Errorf("missing interpreter: %v", err)
	}
	// The step halves run, then the loader reports the data directory without train.csv.
	empty := t.TempDir()
	_, err = runCLI(t, "bench", "train", "--library", lib, "--script", "../../"+benchtrain.DefaultScript,
		"--data", empty, "--size", "64", "--batch", "2", "--steps", "1", "--warmup", "0", "--rounds", "1")
	if errors.As(err, &pe) && pe.Kind == "no_torch" && os.Getenv("CI") == "" {
		t.Skipf("%v; CI unset, so skipping the rest", err)
	}
	if err == nil || !strings.Contains(err.Error(), filepath.Join(empty, "train.csv")) {
		t.Errorf("empty data directory: %v", err)
	}
}
