package torch

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/testenv"
)

// libPath is HPA_TORCH_LIBRARY or the setup script's default under the repository root.
func libPath(t testing.TB) string {
	if p := os.Getenv("HPA_TORCH_LIBRARY"); p != "" {
		return p
	}
	return filepath.Join(testenv.RepoRoot(t), DefaultLibrary)
}

var threadsOnce sync.Once

// openLib opens the shim. A missing library skips the test outside CI and fails it in CI.
func openLib(t testing.TB) *Lib {
	t.Helper()
	p := libPath(t)
	if _, err := os.Stat(p); err != nil && os.Getenv("CI") == "" {
		t.Skipf("training shim %s not built (run scripts/setup.sh); CI unset, so skipping", p)
	}
	l, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	threadsOnce.Do(func() {
		// The test machines are small and shared: one intra-op thread keeps runs predictable.
		if err := l.SetNumThreads(1); err != nil {
			t.Fatal(err)
		}
	})
	return l
}

func preset(t testing.TB, name string, stem model.Stem) model.Spec {
	t.Helper()
	s, err := model.Preset(name)
	if err != nil {
		t.Fatal(err)
	}
	s.Stem = stem
	return s
}

func newModel(t testing.TB, l *Lib, s model.Spec, seed uint64) *Model {
	t.Helper()
	m, err := l.NewModel(s, "cpu", seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func randInput(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// randomizeBN gives every BatchNorm non-trivial statistics and affine parameters (fresh models
// have mean 0, var 1, gamma 1 or 0, beta 0, which would hide mistakes) and returns the new weights.
func randomizeBN(w model.Weights, rng *rand.Rand) model.Weights {
	out := w.Clone()
	for name, v := range out {
		switch {
		case strings.HasSuffix(name, ".running_var"):
			for i := range v {
				v[i] = float32(0.5 + rng.Float64())
			}
		case strings.HasSuffix(name, ".running_mean"):
			for i := range v {
				v[i] = float32(0.2 * rng.NormFloat64())
			}
		case isBN(name, w) && strings.HasSuffix(name, ".weight"):
			for i := range v {
				v[i] = float32(0.5 + rng.Float64())
			}
		case isBN(name, w) && strings.HasSuffix(name, ".bias"):
			for i := range v {
				v[i] = float32(0.1 * rng.NormFloat64())
			}
		}
	}
	return out
}

func isBN(name string, w model.Weights) bool {
	i := strings.LastIndex(name, ".")
	_, ok := w[name[:i]+".running_mean"]
	return ok
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}
