package torch

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hpa-plates/hpa/internal/model"
)

func TestOpenErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope", "libhpatorch.so")
	_, err := Open(missing)
	var le *LibraryError
	if !errors.As(err, &le) || le.Path != missing {
		t.Fatalf("want *LibraryError for %s, got %v", missing, err)
	}
	if !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "scripts/setup.sh") {
		t.Errorf("error should name the path and the setup script: %v", err)
	}
	notLib := filepath.Join(t.TempDir(), "fake.so")
	if err := os.WriteFile(notLib, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(notLib); !errors.As(err, &le) || le.Path != notLib {
		t.Fatalf("want *LibraryError for a non-library, got %v", err)
	}
	// A real shared library that is not the shim: a missing entry point.
	if _, err := Open("/lib/x86_64-linux-gnu/libm.so.6"); err == nil || !strings.Contains(err.Error(), "hpat_") {
		if _, statErr := os.Stat("/lib/x86_64-linux-gnu/libm.so.6"); statErr == nil {
			t.Fatalf("libm is not the shim, want a missing-symbol error, got %v", err)
		}
	}
}

func TestAllocatorLinked(t *testing.T) {
	has, err := AllocatorMapped()
	if err != nil {
		t.Skip("no /proc/self/maps:", err)
	}
	if want := Allocator == "tcmalloc"; has != want {
		t.Fatalf("Allocator=%s but tcmalloc mapped=%v", Allocator, has)
	}
}

func TestOpenWith(t *testing.T) {
	p := libPath(t)
	var le *LibraryError
	if _, err := OpenWith(Options{Library: filepath.Join(t.TempDir(), "missing.so")}); !errors.As(err, &le) {
		t.Fatalf("missing library: %v", err)
	}
	openLib(t) // skips when the shim is not built
	if _, err := OpenWith(Options{Library: p, Threads: -1}); err == nil {
		t.Error("negative threads accepted")
	}
	l, err := OpenWith(Options{Library: p, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if l.NumThreads() != 1 {
		t.Errorf("threads %d", l.NumThreads())
	}
}

func TestVersionAndDevices(t *testing.T) {
	l := openLib(t)
	if v := l.Version(); !strings.HasPrefix(v, fmt.Sprintf("hpatorch %d (libtorch ", ABIVersion)) {
		t.Errorf("version %q", v)
	}
	if l.NumThreads() != 1 {
		t.Errorf("threads %d after SetNumThreads(1)", l.NumThreads())
	}
	if err := l.SetNumThreads(0); err == nil {
		t.Error("SetNumThreads(0) must fail")
	}
	if l.CUDAAvailable() != (l.DeviceCount() > 0) {
		t.Errorf("cuda available %v but %d devices", l.CUDAAvailable(), l.DeviceCount())
	}
	l2, err := Open(l.Path())
	if err != nil || l2 != l {
		t.Errorf("re-opening the same path should return the same Lib: %v", err)
	}
}

// The shim's module registration must give exactly timm's state dict: names, shapes, kinds, order.
func TestTensorsMatchSpec(t *testing.T) {
	l := openLib(t)
	for _, name := range model.PresetNames() {
		for _, stem := range []model.Stem{model.StemMaxPool, model.StemConv} {
			s := preset(t, name, stem)
			m, err := l.NewModel(s, "cpu", 1)
			if err != nil {
				t.Fatalf("%s/%s: %v", name, stem, err)
			}
			got, want := m.Tensors(), s.Tensors()
			m.Close()
			if len(got) != len(want) {
				t.Fatalf("%s/%s: %d tensors, spec has %d", name, stem, len(got), len(want))
			}
			for i := range want {
				if got[i].Name != want[i].Name || !reflect.DeepEqual(got[i].Shape, want[i].Shape) || got[i].Kind != want[i].Kind {
					t.Fatalf("%s/%s tensor %d: shim %+v, spec %+v", name, stem, i, got[i], want[i])
				}
			}
			params := 0
			for _, ts := range got {
				if ts.Kind == model.Param {
					params += ts.Size()
				}
			}
			if params != s.ParamCount() {
				t.Errorf("%s/%s: %d params, spec %d", name, stem, params, s.ParamCount())
			}
		}
	}
}

func TestNewModelErrors(t *testing.T) {
	l := openLib(t)
	s := preset(t, "seresnext_tiny", model.StemMaxPool)
	bad := s
	bad.Stem = "avgpool"
	if _, err := l.NewModel(bad, "cpu", 1); err == nil || !strings.Contains(err.Error(), "stem") {
		t.Errorf("invalid spec: %v", err)
	}
	var te *Error
	if _, err := l.NewModel(s, "tpu:0", 1); !errors.As(err, &te) || !strings.Contains(err.Error(), "tpu") {
		t.Errorf("unknown device: %v", err)
	}
	if !l.CUDAAvailable() {
		if _, err := l.NewModel(s, "cuda:0", 1); !errors.As(err, &te) || !strings.Contains(err.Error(), "cuda:0") {
			t.Errorf("cuda on a CPU build: %v", err)
		}
	}
}

// The shim validates the flattened spec itself: malformed ones are errors, not crashes.
func TestShimRejectsMalformedSpec(t *testing.T) {
	l := openLib(t)
	s := preset(t, "seresnext_tiny", model.StemMaxPool)
	good, err := flattenSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func([]int64) []int64) []int64 { return f(append([]int64(nil), good...)) }
	cases := map[string][]int64{
		"empty":         nil,
		"short header":  good[:3],
		"length":        good[:len(good)-1],
		"zero channels": mutate(func(v []int64) []int64 { v[0] = 0; return v }),
		"stem kind":     mutate(func(v []int64) []int64 { v[2] = 5; return v }),
		"groups":        mutate(func(v []int64) []int64 { v[6+6] = 7; return v }), // width 64 % 7
		"stage order":   mutate(func(v []int64) []int64 { v[6+9] = 3; return v }), // second block claims stage 3
	}
	for name, flat := range cases {
		m, err := l.newModelFlat(s, flat, "cpu", 1)
		var te *Error
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "spec") {
			t.Errorf("%s: want a spec error, got %v", name, err)
		}
		if m != nil {
			m.Close()
		}
	}
	m, err := l.newModelFlat(s, good, "cpu", 1)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
}

func TestWeightsRoundTrip(t *testing.T) {
	l := openLib(t)
	s := preset(t, "seresnext_tiny", model.StemConv)
	m := newModel(t, l, s, 7)
	w, err := m.Weights()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Check(s); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	w2 := randomizeBN(w, rng)
	for _, v := range w2 {
		for i := range v {
			v[i] += float32(0.01 * rng.NormFloat64())
		}
	}
	w2["bn1.num_batches_tracked"] = []float32{42}
	if err := m.SetWeights(w2); err != nil {
		t.Fatal(err)
	}
	got, err := m.Weights()
	if err != nil {
		t.Fatal(err)
	}
	delete(w2, "bn1.num_batches_tracked")
	if !reflect.DeepEqual(got, w2) {
		t.Fatal("Weights after SetWeights differ from what was set")
	}
	if n, err := m.NumBatchesTracked("bn1"); err != nil || n != 42 {
		t.Errorf("num_batches_tracked %d, %v", n, err)
	}

	// Bad weights: typed errors, model unchanged.
	var we *model.WeightsError
	missing := w2.Clone()
	delete(missing, "layer2.0.conv2.weight")
	if err := m.SetWeights(missing); !errors.As(err, &we) || !strings.Contains(err.Error(), "layer2.0.conv2.weight") {
		t.Errorf("missing tensor: %v", err)
	}
	short := w2.Clone()
	short["fc.bias"] = short["fc.bias"][:3]
	if err := m.SetWeights(short); !errors.As(err, &we) || !strings.Contains(err.Error(), "fc.bias") {
		t.Errorf("wrong size: %v", err)
	}
	foreign := w2.Clone()
	foreign["head.fc.weight"] = []float32{1}
	if err := m.SetWeights(foreign); !errors.As(err, &we) || !strings.Contains(err.Error(), "head.fc.weight") {
		t.Errorf("unknown name: %v", err)
	}
	nan := w2.Clone()
	nan["conv1.weight"][0] = float32(math.NaN())
	if err := m.SetWeights(nan); !errors.As(err, &we) {
		t.Errorf("NaN: %v", err)
	}
	if again, _ := m.Weights(); !reflect.DeepEqual(again, w2) {
		t.Error("a rejected SetWeights changed the model")
	}
	if _, err := m.NumBatchesTracked("nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown BN: %v", err)
	}
}

func TestSeededInit(t *testing.T) {
	l := openLib(t)
	s := preset(t, "seresnext_tiny", model.StemMaxPool)
	w1, _ := newModel(t, l, s, 123).Weights()
	w2, _ := newModel(t, l, s, 123).Weights()
	w3, _ := newModel(t, l, s, 124).Weights()
	if !reflect.DeepEqual(w1, w2) {
		t.Fatal("same seed, different weights")
	}
	if reflect.DeepEqual(w1["layer1.0.conv2.weight"], w3["layer1.0.conv2.weight"]) {
		t.Fatal("different seeds, same weights")
	}
	// timm's scheme: BN gamma 1 (0 for each block's last BN), beta 0, mean 0, var 1; convolutions
	// kaiming-normal with std sqrt(2/fan_out).
	for _, ts := range s.Tensors() {
		v := w1[ts.Name]
		switch {
		case strings.HasSuffix(ts.Name, ".bn3.weight"):
			checkConst(t, ts.Name, v, 0)
		case ts.Kind == model.RunningVar, isBN(ts.Name, w1) && strings.HasSuffix(ts.Name, ".weight"):
			checkConst(t, ts.Name, v, 1)
		case ts.Kind == model.RunningMean, isBN(ts.Name, w1) && strings.HasSuffix(ts.Name, ".bias"):
			checkConst(t, ts.Name, v, 0)
		}
	}
	v := w1["layer4.0.conv3.weight"] // 512 x 128 x 1 x 1: fan_out 512
	sd := 0.0
	for _, x := range v {
		sd += float64(x) * float64(x)
	}
	sd = math.Sqrt(sd / float64(len(v)))
	if want := math.Sqrt(2.0 / 512); math.Abs(sd-want) > 0.05*want {
		t.Errorf("layer4.0.conv3 std %.4f, want %.4f", sd, want)
	}
}

func checkConst(t *testing.T, name string, v []float32, c float32) {
	t.Helper()
	for _, x := range v {
		if x != c {
			t.Errorf("%s: %v, want all %v", name, x, c)
			return
		}
	}
}

// Eval-mode forward against the plain Go reference, both stems, with randomized BN statistics.
func TestForwardMatchesReference(t *testing.T) {
	l := openLib(t)
	for _, stem := range []model.Stem{model.StemMaxPool, model.StemConv} {
		s := preset(t, "seresnext_tiny", stem)
		m := newModel(t, l, s, 5)
		w0, err := m.Weights()
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(3, uint64(len(stem))))
		w := randomizeBN(w0, rng)
		if err := m.SetWeights(w); err != nil {
			t.Fatal(err)
		}
		const n, hw = 2, 64
		x := randInput(rng, n*s.InChans*hw*hw)
		got, err := m.Forward(x, n, hw, hw, false)
		if err != nil {
			t.Fatal(err)
		}
		want, conv1 := refForward(s, w, x, n, hw, hw)
		d := 0.0
		for i := range want {
			d = math.Max(d, math.Abs(float64(got[i])-want[i]))
		}
		if d > 1e-4 {
			t.Errorf("%s stem: max |libtorch - reference| = %g", stem, d)
		}
		// Eval mode leaves the running statistics alone; training mode updates them with
		// momentum 0.1 from the batch (unbiased variance) and counts the batch.
		if after, _ := m.Weights(); !reflect.DeepEqual(after, w) {
			t.Error("eval forward changed the weights")
		}
		if _, err := m.Forward(x, n, hw, hw, true); err != nil {
			t.Fatal(err)
		}
		after, _ := m.Weights()
		cnt := conv1.n * conv1.h * conv1.w
		for c := 0; c < conv1.c; c++ {
			sum, sq := 0.0, 0.0
			for i := 0; i < conv1.n; i++ {
				for j := 0; j < conv1.h*conv1.w; j++ {
					v := conv1.d[(i*conv1.c+c)*conv1.h*conv1.w+j]
					sum += v
					sq += v * v
				}
			}
			mean := sum / float64(cnt)
			uvar := (sq - float64(cnt)*mean*mean) / float64(cnt-1)
			wm := 0.9*float64(w["bn1.running_mean"][c]) + 0.1*mean
			wv := 0.9*float64(w["bn1.running_var"][c]) + 0.1*uvar
			if math.Abs(float64(after["bn1.running_mean"][c])-wm) > 1e-4 || math.Abs(float64(after["bn1.running_var"][c])-wv) > 1e-3*wv {
				t.Fatalf("bn1 channel %d after a training forward: mean %v var %v, want %v %v", c,
					after["bn1.running_mean"][c], after["bn1.running_var"][c], wm, wv)
			}
		}
		if k, _ := m.NumBatchesTracked("layer4.0.bn3"); k != 1 {
			t.Errorf("num_batches_tracked %d after one training forward", k)
		}
	}
}

func TestForwardInputErrors(t *testing.T) {
	l := openLib(t)
	s := preset(t, "seresnext_tiny", model.StemMaxPool)
	m := newModel(t, l, s, 1)
	var ie *InputError
	if _, err := m.Forward(make([]float32, 10), 1, 64, 64, false); !errors.As(err, &ie) {
		t.Errorf("short input: %v", err)
	}
	if _, err := m.Forward(nil, 0, 64, 64, false); !errors.As(err, &ie) {
		t.Errorf("empty batch: %v", err)
	}
	m.Close()
	m.Close()
	if _, err := m.Forward(make([]float32, 4*64*64), 1, 64, 64, false); !errors.Is(err, ErrClosed) {
		t.Errorf("closed model: %v", err)
	}
	if _, err := m.Weights(); !errors.Is(err, ErrClosed) {
		t.Errorf("closed model: %v", err)
	}
}

// Concurrent use: forwards on one shared model and on separate models agree with sequential runs.
func TestConcurrentForward(t *testing.T) {
	l := openLib(t)
	s := preset(t, "seresnext_tiny", model.StemMaxPool)
	shared := newModel(t, l, s, 9)
	rng := rand.New(rand.NewPCG(9, 9))
	const hw = 64
	xs := make([][]float32, 4)
	want := make([][]float32, len(xs))
	for i := range xs {
		xs[i] = randInput(rng, s.InChans*hw*hw)
		var err error
		if want[i], err = shared.Forward(xs[i], 1, hw, hw, false); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(xs))
	for i := range xs {
		wg.Add(2)
		go func() {
			defer wg.Done()
			got, err := shared.Forward(xs[i], 1, hw, hw, false)
			if err == nil && maxAbsDiff(got, want[i]) > 1e-6 {
				err = errors.New("shared model: concurrent result differs")
			}
			errs <- err
		}()
		go func() {
			defer wg.Done()
			own, err := l.NewModel(s, "cpu", 9)
			if err != nil {
				errs <- err
				return
			}
			defer own.Close()
			got, err := own.Forward(xs[i], 1, hw, hw, false)
			if err == nil && maxAbsDiff(got, want[i]) > 1e-6 {
				err = errors.New("own model: result differs")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
