package onnx

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx/onnxpb"
	"github.com/hpa-plates/hpa/internal/testenv"
)

const testSize = 64

var (
	ortOnce sync.Once
	ortErr  error
)

// initORT loads ONNX Runtime once per process: $HPA_ORT_LIBRARY, else <repo>/.cache/libonnxruntime.so
// (scripts/setup.sh puts it there).
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
		t.Fatal(ortErr)
	}
}

// runORT runs an exported model on a batch [n, C, s, s] and returns the logits [n, classes].
func runORT(t testing.TB, onnxData []byte, spec model.Spec, input []float32, n int) []float32 {
	t.Helper()
	initORT(t)
	opts, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		t.Fatal(err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		t.Fatal(err)
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(onnxData, []string{"input"}, []string{"logits"}, opts)
	if err != nil {
		t.Fatalf("ONNX Runtime rejects the export: %v", err)
	}
	defer sess.Destroy()
	in, err := ort.NewTensor(ort.NewShape(int64(n), int64(spec.InChans), testSize, testSize), input)
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
		t.Fatalf("run: %v", err)
	}
	return append([]float32(nil), out.GetData()...)
}

// perturbed returns seeded weights whose BatchNorm parameters and buffers are not the identity,
// so that a comparison exercises every initializer.
func perturbed(spec model.Spec, seed int64) model.Weights {
	w := model.InitWeights(spec, seed)
	r := rand.New(rand.NewPCG(uint64(seed), 99))
	for _, t := range spec.Tensors() {
		v := w[t.Name]
		switch {
		case t.Kind == model.RunningMean:
			for i := range v {
				v[i] = float32(r.NormFloat64() * 0.1)
			}
		case t.Kind == model.RunningVar:
			for i := range v {
				v[i] = float32(0.5 + r.Float64()*1.5)
			}
		case t.Kind == model.Param && len(t.Shape) == 1 && strings.HasSuffix(t.Name, ".weight"):
			for i := range v {
				v[i] = float32(0.5 + r.Float64())
			}
		case t.Kind == model.Param && len(t.Shape) == 1 && !strings.Contains(t.Name, "fc"):
			for i := range v {
				v[i] = float32(r.NormFloat64() * 0.1)
			}
		}
	}
	return w
}

func tiny(t testing.TB, stem model.Stem) model.Spec {
	t.Helper()
	s, err := model.Preset("seresnext_tiny")
	if err != nil {
		t.Fatal(err)
	}
	s.Stem = stem
	return s
}

func testInput(spec model.Spec, n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n*spec.InChans*testSize*testSize)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func export(t testing.TB, spec model.Spec, w model.Weights) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Export(&buf, spec, w, ExportOptions{InputSize: testSize}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExportMatchesReferenceInORT(t *testing.T) {
	for _, stem := range []model.Stem{model.StemMaxPool, model.StemConv} {
		t.Run(string(stem), func(t *testing.T) {
			spec := tiny(t, stem)
			w := perturbed(spec, 11)
			data := export(t, spec, w)
			const n = 3
			in := testInput(spec, n, 5)
			got3 := runORT(t, data, spec, in, n)
			per := spec.InChans * testSize * testSize
			maxAbs, maxDiff := 0.0, 0.0
			for s := 0; s < n; s++ {
				ref := refForward(spec, w, in[s*per:(s+1)*per], testSize)
				row := got3[s*spec.NumClasses : (s+1)*spec.NumClasses]
				for c, r := range ref {
					g := float64(row[c])
					if math.IsNaN(g) || math.IsInf(g, 0) {
						t.Fatalf("sample %d class %d: ORT gives %g", s, c, g)
					}
					maxAbs = math.Max(maxAbs, math.Abs(r))
					maxDiff = math.Max(maxDiff, math.Abs(g-r))
					if d := math.Abs(g - r); d > 1e-4*math.Max(1, math.Abs(r)) {
						t.Fatalf("sample %d class %d: ORT %.7g, Go reference %.7g (diff %.3g)", s, c, g, r, d)
					}
				}
			}
			t.Logf("max |logit| %.4g, max |ORT - reference| %.3g", maxAbs, maxDiff)
			if maxAbs < 1e-2 {
				t.Fatalf("logits are all ~0 (max |logit| %g): the check would not discriminate", maxAbs)
			}
			// Batch 1 gives the same rows as batch 3 (dynamic batch axis, no cross-sample mixing).
			for s := 0; s < n; s++ {
				got1 := runORT(t, data, spec, in[s*per:(s+1)*per], 1)
				for c := range got1 {
					if d := math.Abs(float64(got1[c] - got3[s*spec.NumClasses+c])); d > 1e-5*math.Max(1, math.Abs(float64(got1[c]))) {
						t.Fatalf("sample %d class %d: batch 1 %g vs batch 3 %g", s, c, got1[c], got3[s*spec.NumClasses+c])
					}
				}
			}
			// Different weights give different logits (the graph really uses the initializers).
			other := runORT(t, export(t, spec, perturbed(spec, 12)), spec, in[:per], 1)
			if slices.Equal(other, got3[:spec.NumClasses]) {
				t.Fatal("other weights, same logits")
			}
		})
	}
}

func TestExportGraphStructure(t *testing.T) {
	spec := tiny(t, model.StemMaxPool)
	m, err := Build(spec, model.InitWeights(spec, 1), ExportOptions{InputSize: testSize})
	if err != nil {
		t.Fatal(err)
	}
	if m.GetIrVersion() != 8 || m.GetOpsetImport()[0].GetVersion() != 17 {
		t.Errorf("IR %d opset %d, want 8 / 17", m.GetIrVersion(), m.GetOpsetImport()[0].GetVersion())
	}
	nodes := map[string]*onnxpb.NodeProto{}
	ops := map[string]int{}
	for _, n := range m.GetGraph().GetNode() {
		nodes[n.GetName()] = n
		ops[n.GetOpType()]++
	}
	bn := nodes["bn1"]
	if bn.GetOpType() != "BatchNormalization" || !slices.Equal(bn.GetInput()[1:], []string{"bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"}) {
		t.Errorf("bn1 node: %v", bn)
	}
	if eps := bn.GetAttribute()[0]; eps.GetName() != "epsilon" || eps.GetF() != float32(1e-5) {
		t.Errorf("bn1 epsilon: %v", eps)
	}
	attr := func(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
		for _, a := range n.GetAttribute() {
			if a.GetName() == name {
				return a
			}
		}
		return nil
	}
	c2 := nodes["layer2.0.conv2"]
	if attr(c2, "group").GetI() != int64(spec.Cardinality) || !slices.Equal(attr(c2, "strides").GetInts(), []int64{2, 2}) {
		t.Errorf("layer2.0.conv2: %v", c2)
	}
	if mp := nodes["maxpool"]; mp.GetOpType() != "MaxPool" || !slices.Equal(attr(mp, "pads").GetInts(), []int64{1, 1, 1, 1}) {
		t.Errorf("maxpool: %v", mp)
	}
	blocks := len(spec.Blocks())
	if ops["Sigmoid"] != blocks || ops["Mul"] != blocks || ops["Add"] != blocks || ops["Gemm"] != 1 || ops["GlobalAveragePool"] != blocks+1 {
		t.Errorf("op counts %v for %d blocks", ops, blocks)
	}
	last := m.GetGraph().GetNode()[len(m.GetGraph().GetNode())-1]
	if last.GetOpType() != "Gemm" || last.GetOutput()[0] != "logits" || attr(last, "transB").GetI() != 1 {
		t.Errorf("output is not the classifier Gemm (no sigmoid): %v", last)
	}
	var names []string
	for _, in := range m.GetGraph().GetInitializer() {
		names = append(names, in.GetName())
	}
	var want []string
	for _, ts := range spec.Tensors() {
		if ts.Kind != model.NumBatches {
			want = append(want, ts.Name)
		}
	}
	if !slices.Equal(names, want) {
		t.Errorf("initializer names differ from timm's")
	}
	conv := tiny(t, model.StemConv)
	mc, err := Build(conv, model.InitWeights(conv, 1), ExportOptions{InputSize: testSize, Opset: 21})
	if err != nil {
		t.Fatal(err)
	}
	if mc.GetIrVersion() != 10 {
		t.Errorf("opset 21 with IR %d", mc.GetIrVersion())
	}
	found := false
	for _, n := range mc.GetGraph().GetNode() {
		if n.GetName() == "maxpool.1" && n.GetOpType() == "BatchNormalization" && n.GetInput()[1] == "maxpool.1.weight" {
			found = true
		}
		if n.GetOpType() == "MaxPool" {
			t.Error("conv stem has a MaxPool")
		}
	}
	if !found {
		t.Error("conv stem lacks the maxpool.1 BatchNormalization")
	}
}

func TestReadInitializersRoundTrip(t *testing.T) {
	spec := tiny(t, model.StemConv)
	w := perturbed(spec, 3)
	got, err := ReadInitializers(bytes.NewReader(export(t, spec, w)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(w) {
		t.Fatalf("%d initializers, want %d", len(got), len(w))
	}
	for n, v := range w {
		if !slices.Equal(got[n], v) {
			t.Fatalf("%s differs after the round trip", n)
		}
	}
}

func TestInfo(t *testing.T) {
	spec := tiny(t, model.StemMaxPool)
	mi, err := Info(bytes.NewReader(export(t, spec, model.InitWeights(spec, 1))))
	if err != nil {
		t.Fatal(err)
	}
	if mi.Arch != "seresnext_tiny" || mi.Spec == nil || mi.Spec.InChans != 4 || mi.InputSize != testSize || mi.Producer != Producer {
		t.Errorf("info: %+v", mi)
	}
	if mi.ParamCount != int64(spec.ParamCount()) {
		t.Errorf("params %d, spec %d", mi.ParamCount, spec.ParamCount())
	}
	if len(mi.Inputs) != 1 || mi.Inputs[0].String() != "input FLOAT[batch, 4, 64, 64]" {
		t.Errorf("inputs %v", mi.Inputs)
	}
	if len(mi.Outputs) != 1 || mi.Outputs[0].String() != "logits FLOAT[batch, 28]" {
		t.Errorf("outputs %v", mi.Outputs)
	}
}

// The full-size export: ~100 MB written to a temporary file, parameter count checked by Info.
func TestExportSeresnext50ParamCount(t *testing.T) {
	spec, err := model.Preset("seresnext50_32x4d")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := ExportFile(p, spec, model.InitWeights(spec, 0), ExportOptions{InputSize: 512}); err != nil {
		t.Fatal(err)
	}
	mi, err := InfoFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if mi.ParamCount != 25_571_404 || mi.Arch != "seresnext50_32x4d" {
		t.Fatalf("seresnext50_32x4d: %d params (arch %q), want 25,571,404", mi.ParamCount, mi.Arch)
	}
	if st, _ := os.Stat(p); st.Size() < 4*25_571_404 {
		t.Fatalf("file of %d bytes cannot hold the weights", st.Size())
	}
}

func TestExportRejectsBadInput(t *testing.T) {
	spec := tiny(t, model.StemMaxPool)
	w := model.InitWeights(spec, 1)
	var buf bytes.Buffer
	bad := w.Clone()
	delete(bad, "layer3.0.bn2.running_var")
	err := Export(&buf, spec, bad, ExportOptions{InputSize: testSize})
	var ee *ExportError
	var we *model.WeightsError
	if !errors.As(err, &ee) || !errors.As(err, &we) || !strings.Contains(err.Error(), "layer3.0.bn2.running_var") {
		t.Errorf("missing weight: %v", err)
	}
	for _, opt := range []ExportOptions{{InputSize: 16}, {InputSize: testSize, Opset: 9}, {InputSize: testSize, InputName: "x", OutputName: "x"}} {
		if err := Export(&buf, spec, w, opt); !errors.As(err, &ee) {
			t.Errorf("options %+v: %v", opt, err)
		}
	}
	s2 := spec
	s2.Cardinality = 5
	if err := Export(&buf, s2, w, ExportOptions{InputSize: testSize}); !errors.As(err, &ee) {
		t.Errorf("invalid spec: %v", err)
	}
	if buf.Len() != 0 {
		t.Error("failed exports wrote bytes")
	}
	if err := ExportFile(filepath.Join(t.TempDir(), "no", "such", "dir.onnx"), spec, w, ExportOptions{InputSize: testSize}); !errors.As(err, &ee) {
		t.Errorf("unwritable path: %v", err)
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	var re *ReadError
	if _, err := ReadInitializers(strings.NewReader("definitely not protobuf \xff\xff\xff")); !errors.As(err, &re) {
		t.Errorf("garbage: %v", err)
	}
	if _, err := Info(bytes.NewReader(nil)); !errors.As(err, &re) {
		t.Errorf("empty: %v", err)
	}
	p := filepath.Join(t.TempDir(), "bad.onnx")
	os.WriteFile(p, []byte{0x08, 0x08}, 0o644) // ir_version 8, no graph
	if _, err := InfoFile(p); !errors.As(err, &re) || re.Name != p {
		t.Errorf("no graph: %v", err)
	}
	if _, err := ReadInitializersFile(filepath.Join(t.TempDir(), "missing.onnx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	// A tensor with a wrong byte count names the initializer.
	spec := tiny(t, model.StemMaxPool)
	m, err := Build(spec, model.InitWeights(spec, 1), ExportOptions{InputSize: testSize})
	if err != nil {
		t.Fatal(err)
	}
	m.Graph.Initializer[0].RawData = m.Graph.Initializer[0].RawData[:8]
	_, err = initializers(m, "x.onnx")
	if !errors.As(err, &re) || re.Tensor != "conv1.weight" {
		t.Errorf("short tensor: %v", err)
	}
}

func BenchmarkExportSeresnext50(b *testing.B) {
	spec, err := model.Preset("seresnext50_32x4d")
	if err != nil {
		b.Fatal(err)
	}
	w := model.InitWeights(spec, 0)
	var n int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var buf bytes.Buffer
		if err := Export(&buf, spec, w, ExportOptions{InputSize: 512}); err != nil {
			b.Fatal(err)
		}
		n = buf.Len()
	}
	b.SetBytes(int64(n))
	b.ReportMetric(float64(n)/float64(4*spec.ParamCount()), "bytes/param-bytes")
}

// BenchmarkTinyORTvsReference: ONNX Runtime on the export vs. the naive Go reference, one 64 px sample.
func BenchmarkTinyORTvsReference(b *testing.B) {
	spec := tiny(b, model.StemMaxPool)
	w := model.InitWeights(spec, 1)
	data := export(b, spec, w)
	in := testInput(spec, 1, 1)
	initORT(b)
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{"input"}, []string{"logits"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Destroy()
	it, _ := ort.NewTensor(ort.NewShape(1, int64(spec.InChans), testSize, testSize), in)
	defer it.Destroy()
	ot, _ := ort.NewEmptyTensor[float32](ort.NewShape(1, int64(spec.NumClasses)))
	defer ot.Destroy()
	var refTotal, ortTotal float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := nowNS()
		if err := sess.Run([]ort.Value{it}, []ort.Value{ot}); err != nil {
			b.Fatal(err)
		}
		t1 := nowNS()
		refForward(spec, w, in, testSize)
		refTotal += float64(nowNS() - t1)
		ortTotal += float64(t1 - t0)
	}
	b.ReportMetric(ortTotal/float64(b.N)/1e6, "ort-ms/sample")
	b.ReportMetric(refTotal/float64(b.N)/1e6, "ref-ms/sample")
	b.ReportMetric(refTotal/ortTotal, "speedup-x")
}

// BenchmarkSeresnext50ORT: the full-size export in ONNX Runtime (1 thread), one 256 px sample;
// fails on non-finite logits.
func BenchmarkSeresnext50ORT(b *testing.B) {
	spec, err := model.Preset("seresnext50_32x4d")
	if err != nil {
		b.Fatal(err)
	}
	const size = 256
	var buf bytes.Buffer
	if err := Export(&buf, spec, model.InitWeights(spec, 0), ExportOptions{InputSize: size}); err != nil {
		b.Fatal(err)
	}
	initORT(b)
	opts, err := ort.NewSessionOptions()
	if err != nil {
		b.Fatal(err)
	}
	defer opts.Destroy()
	opts.SetIntraOpNumThreads(1)
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(buf.Bytes(), []string{"input"}, []string{"logits"}, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Destroy()
	r := rand.New(rand.NewPCG(1, 2))
	in := make([]float32, spec.InChans*size*size)
	for i := range in {
		in[i] = float32(r.NormFloat64())
	}
	it, _ := ort.NewTensor(ort.NewShape(1, int64(spec.InChans), size, size), in)
	defer it.Destroy()
	ot, _ := ort.NewEmptyTensor[float32](ort.NewShape(1, int64(spec.NumClasses)))
	defer ot.Destroy()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := sess.Run([]ort.Value{it}, []ort.Value{ot}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	for c, v := range ot.GetData() {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			b.Fatalf("logit %d = %g", c, v)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/sample")
}

// Every accepted opset yields a model ONNX Runtime loads and that computes the same logits.
func TestExportOpsetsLoadInORT(t *testing.T) {
	spec := tiny(t, model.StemMaxPool)
	w := perturbed(spec, 21)
	in := testInput(spec, 1, 3)
	var base []float32
	for _, opset := range []int{13, 15, 17, 19, 21} {
		var buf bytes.Buffer
		if err := Export(&buf, spec, w, ExportOptions{InputSize: testSize, Opset: opset}); err != nil {
			t.Fatal(err)
		}
		got := runORT(t, buf.Bytes(), spec, in, 1)
		if base == nil {
			base = got
			continue
		}
		for c := range got {
			if math.Abs(float64(got[c]-base[c])) > 1e-5 {
				t.Fatalf("opset %d class %d: %g vs opset 13 %g", opset, c, got[c], base[c])
			}
		}
	}
}
