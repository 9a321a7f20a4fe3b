package ort

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// testOpts keeps ONNX Runtime to the two cores the test machines have.
var testOpts = Options{IntraThreads: 2, InterThreads: 1, MaxBatch: 2}

// exportMember writes a randomly initialized member and returns its manifest entry.
func exportMember(t testing.TB, dir string, spec model.Spec, size int, seed int64) model.Member {
	t.Helper()
	name := filepath.Join(dir, "member"+string(rune('a'+seed%26))+".onnx")
	var buf bytes.Buffer
	if err := onnx.Export(&buf, spec, model.InitWeights(spec, seed), onnx.ExportOptions{InputSize: size, InputName: "input", OutputName: "logits", Opset: 17}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := model.FileSHA256(name)
	if err != nil {
		t.Fatal(err)
	}
	return model.Member{File: filepath.Base(name), SHA256: sum, Fold: int(seed)}
}

func testManifest(spec model.Spec, size, views int, members []model.Member) *model.Manifest {
	return &model.Manifest{
		Schema: model.ManifestSchema, Name: "ort-test", Version: "v1", Arch: spec, InputSize: size,
		ChannelOrder:  []string{"red", "green", "blue", "yellow"},
		Normalization: model.DefaultNormalization(spec.InChans),
		ClassNames:    labels.ClassNames[:],
		InputName:     "input", OutputName: "logits", TTAViews: views,
		Thresholds: model.Thresholds{Mode: "uniform", Uniform: 0.2},
		Members:    members,
	}
}

// writeSet exports n members of preset at size into a temp dir and writes the manifest there.
func writeSet(t testing.TB, preset string, size, views, n int) (string, *model.Manifest) {
	t.Helper()
	spec, err := model.Preset(preset)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var members []model.Member
	for i := 0; i < n; i++ {
		members = append(members, exportMember(t, dir, spec, size, int64(i+1)))
	}
	m := testManifest(spec, size, views, members)
	path, err := model.WriteManifest(dir, m)
	if err != nil {
		t.Fatal(err)
	}
	return path, m
}

// randImage is a size x size sample with a bright blob off-centre and noise, so that rotations differ.
func randImage(id string, size int, seed int64) pipeline.Image4 {
	r := rand.New(rand.NewSource(seed))
	img := pipeline.Image4{ID: id, W: size, H: size}
	for c := range img.Planes {
		p := pipeline.Plane{W: size, H: size, Pix: make([]uint8, size*size)}
		cx, cy := float64(size)*(0.2+0.15*float64(c)), float64(size)*0.3
		for y := 0; y < size; y++ {
			for x := 0; x < size; x++ {
				d := math.Hypot(float64(x)-cx, float64(y)-cy)
				v := 200*math.Exp(-d*d/float64(size*size/20)) + float64(r.Intn(40)) + float64(x)
				p.Pix[y*size+x] = uint8(min(v, 255))
			}
		}
		img.Planes[c] = p
	}
	return img
}

// transform applies a pixel permutation (written out by hand, independent of pipeline/tta.go) to every plane.
func transform(img pipeline.Image4, f func(y, x, s int) (int, int)) pipeline.Image4 {
	out := img
	s := img.W
	for c, p := range img.Planes {
		q := pipeline.Plane{W: s, H: s, Pix: make([]uint8, s*s)}
		for y := 0; y < s; y++ {
			for x := 0; x < s; x++ {
				sy, sx := f(y, x, s)
				q.Pix[y*s+x] = p.Pix[sy*s+sx]
			}
		}
		out.Planes[c] = q
	}
	return out
}

var (
	rot90  = func(y, x, s int) (int, int) { return x, s - 1 - y }
	flipLR = func(y, x, s int) (int, int) { return y, s - 1 - x }
	flipUD = func(y, x, s int) (int, int) { return s - 1 - y, x }
)

// allViews are the 8 dihedral images of img, built by composing the hand-written maps.
func allViews(img pipeline.Image4) []pipeline.Image4 {
	var out []pipeline.Image4
	for _, base := range []pipeline.Image4{img, transform(img, flipLR)} {
		cur := base
		for k := 0; k < 4; k++ {
			out = append(out, cur)
			cur = transform(cur, rot90)
		}
	}
	return out
}

func maxDiff(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

func predictOne(t *testing.T, e *Ensemble, img pipeline.Image4) []float64 {
	t.Helper()
	p, err := e.Predict(context.Background(), []pipeline.Image4{img})
	if err != nil {
		t.Fatal(err)
	}
	return p[0]
}

func TestTTAInvariance(t *testing.T) {
	path, _ := writeSet(t, "seresnext_tiny", 64, 8, 2)
	e, err := Load(path, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	img := randImage("s1", 64, 1)
	base := predictOne(t, e, img)
	for name, f := range map[string]func(y, x, s int) (int, int){"rot90": rot90, "fliplr": flipLR, "flipud": flipUD} {
		p := predictOne(t, e, transform(img, f))
		if d := maxDiff(base, p); d > 1e-5 {
			t.Errorf("%s: probabilities differ by %g with 8-view TTA", name, d)
		}
	}
	// The invariance comes from the TTA, not from a model that ignores its input.
	m1 := *e.Manifest()
	m1.TTAViews = 1
	e1, err := New(&m1, filepath.Dir(path), testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer e1.Close()
	if d := maxDiff(predictOne(t, e1, img), predictOne(t, e1, transform(img, rot90))); d < 1e-4 {
		t.Errorf("without TTA, rot90 changes the probabilities by only %g: the test model is degenerate", d)
	}
	if d := maxDiff(base, predictOne(t, e, randImage("s2", 64, 2))); d < 1e-4 {
		t.Errorf("two different images give probabilities within %g", d)
	}
}

func TestEnsembleMeanOfMembers(t *testing.T) {
	path, m := writeSet(t, "seresnext_tiny", 64, 8, 3)
	dir := filepath.Dir(path)
	e, err := Load(path, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	imgs := []pipeline.Image4{randImage("a", 64, 11), randImage("b", 64, 12), randImage("c", 64, 13)}
	got, err := e.Predict(context.Background(), imgs) // MaxBatch 2: two runs
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d results for 3 samples", len(got))
	}
	for i, img := range imgs {
		want := make([]float64, labels.NumClasses)
		views := allViews(img)
		for _, mem := range m.Members {
			// One member, one view: the runner's output is that member's own sigmoid.
			single := testManifest(m.Arch, 64, 1, []model.Member{mem})
			es, err := New(single, dir, testOpts)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range views {
				p := predictOne(t, es, v)
				for k := range want {
					want[k] += p[k] / float64(len(m.Members)*len(views))
				}
			}
			es.Close()
		}
		if d := maxDiff(got[i], want); d > 1e-5 {
			t.Errorf("sample %s: ensemble differs from the hand-computed mean by %g", img.ID, d)
		}
		for k, p := range got[i] {
			if !(p > 0 && p < 1) {
				t.Errorf("sample %s class %d: p = %v", img.ID, k, p)
			}
		}
	}
	// A sample alone gives the same probabilities as in a batch.
	if d := maxDiff(predictOne(t, e, imgs[2]), got[2]); d > 1e-5 {
		t.Errorf("batching changes probabilities by %g", d)
	}
}

func TestTamperedMember(t *testing.T) {
	path, m := writeSet(t, "seresnext_tiny", 64, 1, 2)
	member := filepath.Join(filepath.Dir(path), m.Members[1].File)
	b, err := os.ReadFile(member)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(member, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, testOpts)
	var me *MemberError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "sha256") || !strings.Contains(err.Error(), m.Members[1].File) {
		t.Fatalf("tampered member: %v", err)
	}
	if err := os.Remove(member); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, testOpts); !errors.As(err, &me) {
		t.Errorf("missing member: %v", err)
	}
	m.Members[1].File = "../outside.onnx"
	if _, err := New(m, filepath.Dir(path), testOpts); !errors.As(err, &me) {
		t.Errorf("member outside the directory: %v", err)
	}
}

func TestLibraryAndProviderErrors(t *testing.T) {
	path, _ := writeSet(t, "seresnext_tiny", 64, 1, 1)
	_, err := Load(path, Options{Library: filepath.Join(t.TempDir(), "libonnxruntime.so")})
	var le *LibraryError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "run scripts/setup.sh") || !strings.Contains(err.Error(), "HPA_ORT_LIBRARY") {
		t.Errorf("missing library: %v", err)
	}
	var pe *ProviderError
	if _, err := Load(path, Options{Provider: "opencl"}); !errors.As(err, &pe) {
		t.Errorf("unknown provider: %v", err)
	}
	for _, p := range []string{ProviderCUDA, ProviderTensorRT} {
		e, err := Load(path, Options{Provider: p})
		if err == nil {
			// A GPU build on a GPU machine: the provider works, nothing to check here.
			e.Close()
			continue
		}
		t.Logf("%s: %v", p, err)
		if !errors.As(err, &pe) || pe.Provider != p {
			t.Errorf("%s on a CPU build: %v", p, err)
		}
	}
	if _, err := Load(path, Options{IntraThreads: -1}); err == nil {
		t.Error("negative threads accepted")
	}
	if v, err := Version(""); err != nil || !strings.HasPrefix(v, "1.") {
		t.Errorf("version %q %v", v, err)
	}
}

func TestPredictErrorsAndConcurrency(t *testing.T) {
	path, _ := writeSet(t, "seresnext_tiny", 64, 2, 1)
	e, err := Load(path, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if info := e.Info(); info.Members != 1 || info.TTAViews != 2 || info.Arch != "seresnext_tiny" || !strings.HasPrefix(info.ManifestDigest, "sha256:") {
		t.Errorf("info %+v", info)
	}
	if th := e.Thresholds(); th.Values[0] != 0.2 {
		t.Errorf("thresholds %+v", th)
	}
	bad := randImage("bad", 64, 3)
	bad.Planes[pipeline.Blue].Pix = bad.Planes[pipeline.Blue].Pix[:10]
	_, err = e.Predict(context.Background(), []pipeline.Image4{randImage("ok", 64, 4), bad})
	var se *SampleError
	if !errors.As(err, &se) || se.Index != 1 || se.SampleID != "bad" {
		t.Errorf("bad sample: %v", err)
	}
	// Larger inputs are resized to the model's input size.
	big := randImage("big", 96, 5)
	if _, err := e.Predict(context.Background(), []pipeline.Image4{big}); err != nil {
		t.Errorf("96 px sample: %v", err)
	}
	img := randImage("c", 64, 6)
	want := predictOne(t, e, img)
	var wg sync.WaitGroup
	errs := make([]float64, 4)
	for g := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := e.Predict(context.Background(), []pipeline.Image4{img, img})
			if err != nil {
				errs[g] = math.Inf(1)
				return
			}
			errs[g] = max(maxDiff(p[0], want), maxDiff(p[1], want))
		}()
	}
	wg.Wait()
	for g, d := range errs {
		if d > 1e-6 {
			t.Errorf("goroutine %d: difference %g", g, d)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Predict(context.Background(), []pipeline.Image4{img}); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func benchEnsemble(b *testing.B, preset string, size, members, batch int) {
	path, _ := writeSet(b, preset, size, 8, members)
	e, err := Load(path, Options{MaxBatch: batch})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	imgs := make([]pipeline.Image4, batch)
	for i := range imgs {
		imgs[i] = randImage("bench", size, int64(i))
	}
	if _, err := e.Predict(context.Background(), imgs); err != nil { // warm-up
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.Predict(context.Background(), imgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(b.N*batch*8*members)/b.Elapsed().Seconds(), "images/s")
}

// BenchmarkTTAFolding compares 8 views folded into one batch (what Predict does) with the same 8
// views run one ONNX Runtime call each; speedup_x is the ratio of the two times.
func BenchmarkTTAFolding(b *testing.B) {
	path, m := writeSet(b, "seresnext_tiny", 128, 8, 1)
	e8, err := Load(path, Options{MaxBatch: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer e8.Close()
	m1 := *m
	m1.TTAViews = 1
	e1, err := New(&m1, filepath.Dir(path), Options{MaxBatch: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer e1.Close()
	views := allViews(randImage("fold", 128, 1))
	var folded, separate time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := e8.Predict(context.Background(), views[:1]); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		for _, v := range views {
			if _, err := e1.Predict(context.Background(), []pipeline.Image4{v}); err != nil {
				b.Fatal(err)
			}
		}
		folded += t1.Sub(t0)
		separate += time.Since(t1)
	}
	b.ReportMetric(float64(separate)/float64(folded), "speedup_x")
	b.ReportMetric(float64(b.N)/folded.Seconds(), "folded_samples/s")
}

// 3 members x 8 views, 4 samples per run.
func BenchmarkEnsembleTiny64(b *testing.B)  { benchEnsemble(b, "seresnext_tiny", 64, 3, 4) }
func BenchmarkEnsembleTiny128(b *testing.B) { benchEnsemble(b, "seresnext_tiny", 128, 3, 4) }

// The production architecture: 1 member, batch 1, 8 views at 512 px.
func BenchmarkEnsembleSEResNeXt50At512(b *testing.B) {
	benchEnsemble(b, "seresnext50_32x4d", 512, 1, 1)
}

func TestResolveLibrary(t *testing.T) {
	if p, err := ResolveLibrary(""); err != nil || !filepath.IsAbs(p) || filepath.Base(p) != "libonnxruntime.so" {
		t.Errorf("default library resolves to %q, %v", p, err)
	}
	var le *LibraryError
	if _, err := ResolveLibrary(t.TempDir()); !errors.As(err, &le) {
		t.Errorf("a directory as library: %v", err)
	}
}
