package torch

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx"
	"github.com/hpa-plates/hpa/internal/testenv"
)

var (
	ortOnce sync.Once
	ortErr  error
)

// initORT loads ONNX Runtime once: $HPA_ORT_LIBRARY, else <repo>/.cache/libonnxruntime.so.
func initORT(t testing.TB) {
	t.Helper()
	ortOnce.Do(func() {
		lib := os.Getenv("HPA_ORT_LIBRARY")
		if lib == "" {
			lib = filepath.Join(testenv.RepoRoot(t), ".cache", "libonnxruntime.so")
		}
		if _, err := os.Stat(lib); err != nil {
			ortErr = errors.New("ONNX Runtime library not found (run scripts/setup.sh or set HPA_ORT_LIBRARY): " + err.Error())
			return
		}
		ort.SetSharedLibraryPath(lib)
		ortErr = ort.InitializeEnvironment()
	})
	if ortErr != nil {
		if os.Getenv("CI") == "" {
			t.Skip(ortErr)
		}
		t.Fatal(ortErr)
	}
}

// ortForward exports spec+w with the ONNX writer and runs ONNX Runtime on x [n, C, hw, hw].
func ortForward(t *testing.T, spec model.Spec, w model.Weights, x []float32, n, hw int) []float32 {
	t.Helper()
	initORT(t)
	var buf bytes.Buffer
	if err := onnx.Export(&buf, spec, w, onnx.ExportOptions{InputSize: hw, InputName: "input", OutputName: "logits", Opset: 17}); err != nil {
		t.Fatal(err)
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		t.Fatal(err)
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(buf.Bytes(), []string{"input"}, []string{"logits"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	in, err := ort.NewTensor(ort.NewShape(int64(n), int64(spec.InChans), int64(hw), int64(hw)), x)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	out, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), int64(spec.NumClasses)))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Destroy()
	if err := sess.Run([]ort.Value{in}, []ort.Value{out}); err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out.GetData()...)
}

// Parity: the libtorch eval forward and ONNX Runtime on the exported member agree to 1e-4, on the
// same weights (the shim's seeded init, BN statistics randomized, moved with Weights) and input.
func TestParityWithONNXRuntime(t *testing.T) {
	l := openLib(t)
	cases := []struct {
		arch       string
		stem       model.Stem
		n, hw      int
		trainSteps int
	}{
		{"seresnext_tiny", model.StemMaxPool, 2, 64, 2},
		{"seresnext_tiny", model.StemConv, 2, 64, 0},
		{"seresnext50_32x4d", model.StemMaxPool, 1, 64, 0},
	}
	for _, c := range cases {
		t.Run(c.arch+"/"+string(c.stem), func(t *testing.T) {
			if testing.Short() && c.arch != "seresnext_tiny" {
				t.Skip("-short: seresnext50 export is ~100 MB")
			}
			s := preset(t, c.arch, c.stem)
			m := newModel(t, l, s, 31)
			w, err := m.Weights()
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(31, uint64(c.n)))
			if err := m.SetWeights(randomizeBN(w, rng)); err != nil {
				t.Fatal(err)
			}
			if c.trainSteps > 0 { // a trained member, not just an initialized one
				x, y := fixedBatch(s, 2, 64, 5)
				opt, err := NewSGD(m, SGDOptions{LR: 0.05, Momentum: 0.9})
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < c.trainSteps; i++ {
					if _, err := m.TrainStep(opt, x, 2, 64, 64, y, StepOptions{Loss: LossFocal, FocalGamma: 2}); err != nil {
						t.Fatal(err)
					}
				}
				opt.Close()
			}
			if w, err = m.Weights(); err != nil {
				t.Fatal(err)
			}
			x := randInput(rng, c.n*s.InChans*c.hw*c.hw)
			got, err := m.Forward(x, c.n, c.hw, c.hw, false)
			if err != nil {
				t.Fatal(err)
			}
			want := ortForward(t, s, w, x, c.n, c.hw)
			d := maxAbsDiff(got, want)
			t.Logf("max |libtorch - ORT| = %.3g over %d logits", d, len(got))
			if d > 1e-4 {
				t.Fatalf("max |libtorch - ORT| = %g > 1e-4", d)
			}
		})
	}
}
