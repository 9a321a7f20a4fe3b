package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/model/torch"
)

// torchShim is the shim built by scripts/setup.sh: skip without it unless CI is set.
func torchShim(t *testing.T) string {
	t.Helper()
	p := os.Getenv("HPA_TORCH_LIBRARY")
	if p == "" {
		var err error
		if p, err = filepath.Abs(filepath.Join("..", "..", torch.DefaultLibrary)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(p); err != nil && os.Getenv("CI") == "" {
		t.Skipf("training shim %s not built (run scripts/setup.sh); CI unset, so skipping", p)
	}
	return p
}

func TestTorchMissingLibrary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libhpatorch.so")
	_, err := runCLI(t, "torch", "info", "--library", missing)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "scripts/setup.sh") {
		t.Fatalf("want an error naming %s and scripts/setup.sh, got %v", missing, err)
	}
	if os.Getenv("HPA_TORCH_LIBRARY") != "" {
		return // the precedence check below would override the caller's setting
	}
	t.Setenv("HPA_TORCH_LIBRARY", missing+".env")
	if _, err := runCLI(t, "torch", "info"); err == nil || !strings.Contains(err.Error(), missing+".env") {
		t.Fatalf("HPA_TORCH_LIBRARY not used: %v", err)
	}
}

func TestTorchInfoAndCheck(t *testing.T) {
	lib := torchShim(t)
	out, err := runCLI(t, "torch", "info", "--library", lib, "--threads", "1")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{fmt.Sprintf("hpatorch %d ", torch.ABIVersion), "allocator: tcmalloc (tcmalloc mapped: true)", "threads:   1"} {
		if !strings.Contains(out, want) {
			t.Errorf("info output lacks %q:\n%s", want, out)
		}
	}
	out, err = runCLI(t, "torch", "check", "--library", lib, "--threads", "1", "--size", "64", "--batch", "2", "--steps", "2")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "step 2: loss ") || !strings.Contains(out, "ms/step after warm-up") {
		t.Errorf("check output:\n%s", out)
	}
	if _, err := runCLI(t, "torch", "check", "--library", lib, "--arch", "resnet9000"); err == nil || !strings.Contains(err.Error(), "resnet9000") {
		t.Errorf("unknown arch: %v", err)
	}
}
