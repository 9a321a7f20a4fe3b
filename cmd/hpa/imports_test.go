package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/testenv"
)

const (
	modulePath = "github.com/hpa-plates/hpa"
	viperPath  = "github.com/spf13/viper"
	natsPath   = "github.com/nats-io/nats.go"
	ortPath    = "github.com/yalue/onnxruntime_go"
)

type listedPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Module     *struct{ Path string }
}

// modulePackages lists the module's packages (not their tests) with their imports and transitive
// dependencies, as `go list -deps -json ./...` reports them.
func modulePackages(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json", "./...")
	cmd.Dir = testenv.RepoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Module != nil && p.Module.Path == modulePath {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found only %d packages of the module", len(pkgs))
	}
	return pkgs
}

// The layering rules of DEVELOPERS.md, checked on the real dependency graph: only internal/config
// and cmd/hpa use viper (directly or through another package), and no package but cmd/hpa's wiring
// depends on both NATS and ONNX Runtime.
func TestImportRules(t *testing.T) {
	var viperUsers, natsAndORT []string
	for _, p := range modulePackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, modulePath), "/")
		if slices.Contains(p.Imports, viperPath) || slices.Contains(p.Deps, viperPath) {
			viperUsers = append(viperUsers, rel)
		}
		if slices.Contains(p.Deps, natsPath) && slices.Contains(p.Deps, ortPath) {
			natsAndORT = append(natsAndORT, rel)
		}
	}
	slices.Sort(viperUsers)
	// The rules must hold, and must be able to fail: the two allowed packages are seen.
	if want := []string{"cmd/hpa", "internal/config"}; !slices.Equal(viperUsers, want) {
		t.Errorf("packages using viper: %v, want only %v (hand typed settings to the others)", viperUsers, want)
	}
	if want := []string{"cmd/hpa"}; !slices.Equal(natsAndORT, want) {
		t.Errorf("packages depending on both NATS and ONNX Runtime: %v, want only %v", natsAndORT, want)
	}
}

// internal/train/folds and internal/train/eval are the trainer's split and scoring halves that
// others use alone: neither may depend on the trainer or the libtorch backend, and the viewer and
// `hpa demo` (internal/local), which only read reports and score, must not pull in the trainer.
func TestTrainSubpackagesStandAlone(t *testing.T) {
	const trainPath, torchPath = modulePath + "/internal/train", modulePath + "/internal/model/torch"
	forbidden := map[string][]string{
		"internal/train/folds": {trainPath, torchPath},
		"internal/train/eval":  {trainPath, torchPath},
		"internal/viewer":      {trainPath},
		"internal/local":       {trainPath},
	}
	seen := 0
	for _, p := range modulePackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, modulePath), "/")
		bad, ok := forbidden[rel]
		if !ok {
			continue
		}
		seen++
		for _, b := range bad {
			if slices.Contains(p.Deps, b) {
				t.Errorf("%s depends on %s", rel, strings.TrimPrefix(b, modulePath+"/"))
			}
		}
	}
	// The rule must be able to fail: every package it names is in the listing.
	if seen != len(forbidden) {
		t.Errorf("found %d of the %d packages %v", seen, len(forbidden), forbidden)
	}
}
