package benchtrain

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/torch"
	"github.com/hpa-plates/hpa/internal/synth"
	"github.com/hpa-plates/hpa/internal/testenv"
)

// openLib opens the shim built by scripts/setup.sh; without it the test is skipped unless CI is set.
func openLib(t testing.TB) *torch.Lib {
	t.Helper()
	p := os.Getenv("HPA_TORCH_LIBRARY")
	if p == "" {
		p = filepath.Join(testenv.RepoRoot(t), torch.DefaultLibrary)
	}
	if _, err := os.Stat(p); err != nil && os.Getenv("CI") == "" {
		t.Skipf("training shim %s not built (run scripts/setup.sh); CI unset, so skipping", p)
	}
	l, err := torch.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetNumThreads(1); err != nil {
		t.Fatal(err)
	}
	return l
}

// pythonWithTorch skips the test when Debian's python3 cannot import torch, unless CI is set.
func pythonWithTorch(t testing.TB) string {
	t.Helper()
	if err := exec.Command(DefaultPython, "-c", "import torch").Run(); err != nil && os.Getenv("CI") == "" {
		t.Skipf("%s cannot import torch (%v): install python3-torch; CI unset, so skipping", DefaultPython, err)
	}
	return DefaultPython
}

func preset(t testing.TB, name string) model.Spec {
	t.Helper()
	s, err := model.Preset(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	synthOnce sync.Once
	synthDir  string
	synthErr  error
)

// synthData is a small `hpa synth` dataset shared by the tests of this package (12 samples, 64 px).
func synthData(t testing.TB) string {
	t.Helper()
	synthOnce.Do(func() {
		dir, err := os.MkdirTemp("", "benchtrain-synth-")
		if err != nil {
			synthErr = err
			return
		}
		synthDir = dir
		_, synthErr = synth.Generate(context.Background(), synth.Options{Out: dir, Samples: 12, Size: 64, Seed: 3, Workers: 2})
	})
	if synthErr != nil {
		t.Fatal(synthErr)
	}
	return synthDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if synthDir != "" {
		os.RemoveAll(synthDir)
	}
	os.Exit(code)
}
