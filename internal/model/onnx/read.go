package onnx

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx/onnxpb"
)

// ReadError is returned for input that is not a usable ONNX model; Name is what the caller read
// from (a file name, or "onnx model" for a bare reader) and Tensor the initializer at fault.
type ReadError struct {
	Name   string
	Tensor string
	Reason string
	Err    error
}

func (e *ReadError) Error() string {
	s := e.Name
	if e.Tensor != "" {
		s += ": initializer " + e.Tensor
	}
	s += ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ReadError) Unwrap() error { return e.Err }

// Decode parses an ONNX model; name is used in errors.
func Decode(r io.Reader, name string) (*onnxpb.ModelProto, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, &ReadError{Name: name, Reason: "read", Err: err}
	}
	m := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, &ReadError{Name: name, Reason: "decode protobuf", Err: fmt.Errorf("%w: %v", errNotModel, err)}
	}
	if m.GetGraph() == nil || m.GetIrVersion() == 0 {
		return nil, &ReadError{Name: name, Reason: "no graph or IR version", Err: errNotModel}
	}
	return m, nil
}

// ReadInitializers returns the float32 initializers of an ONNX model by name: for a model written
// by Export, exactly the weights it was given (under their timm names).
func ReadInitializers(r io.Reader) (model.Weights, error) {
	return readInitializers(r, "onnx model")
}

// ReadInitializersFile is ReadInitializers on a file, naming it in errors.
func ReadInitializersFile(path string) (model.Weights, error) {
	m, err := decodeFile(path)
	if err != nil {
		return nil, err
	}
	return initializers(m, path)
}

func readInitializers(r io.Reader, name string) (model.Weights, error) {
	m, err := Decode(r, name)
	if err != nil {
		return nil, err
	}
	return initializers(m, name)
}

func initializers(m *onnxpb.ModelProto, name string) (model.Weights, error) {
	w := make(model.Weights, len(m.GetGraph().GetInitializer()))
	for _, t := range m.GetGraph().GetInitializer() {
		n := t.GetName()
		fail := func(reason string) error { return &ReadError{Name: name, Tensor: n, Reason: reason} }
		if n == "" {
			return nil, fail("unnamed")
		}
		if _, dup := w[n]; dup {
			return nil, fail("duplicate name")
		}
		if t.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
			return nil, fail(fmt.Sprintf("data type %s, want FLOAT", onnxpb.TensorProto_DataType(t.GetDataType())))
		}
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			return nil, fail("external data is not supported")
		}
		count := int64(1)
		for _, d := range t.GetDims() {
			if d < 0 || (d > 0 && count > math.MaxInt32/d) {
				return nil, fail(fmt.Sprintf("bad dims %v", t.GetDims()))
			}
			count *= d
		}
		var v []float32
		switch {
		case t.RawData != nil:
			raw := t.GetRawData()
			if int64(len(raw)) != 4*count {
				return nil, fail(fmt.Sprintf("%d raw bytes for dims %v (want %d)", len(raw), t.GetDims(), 4*count))
			}
			v = make([]float32, count)
			for i := range v {
				v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		default:
			if int64(len(t.GetFloatData())) != count {
				return nil, fail(fmt.Sprintf("%d float_data values for dims %v", len(t.GetFloatData()), t.GetDims()))
			}
			v = append([]float32(nil), t.GetFloatData()...)
		}
		w[n] = v
	}
	return w, nil
}

// Dim is one dimension of a graph input or output: a fixed size or a symbolic name.
type Dim struct {
	Value int64
	Param string // set for symbolic (dynamic) dimensions such as "batch"
}

func (d Dim) String() string {
	if d.Param != "" {
		return d.Param
	}
	if d.Value <= 0 {
		return "?"
	}
	return strconv.FormatInt(d.Value, 10)
}

// ValueInfo is a graph input or output.
type ValueInfo struct {
	Name     string
	ElemType string // "FLOAT", ...
	Shape    []Dim
}

func (v ValueInfo) String() string {
	ds := make([]string, len(v.Shape))
	for i, d := range v.Shape {
		ds[i] = d.String()
	}
	return fmt.Sprintf("%s %s[%s]", v.Name, v.ElemType, strings.Join(ds, ", "))
}

// FileInfo summarizes an ONNX file (not to be confused with labels.ModelInfo, the model set a label
// names).
type FileInfo struct {
	IRVersion int64
	Opset     int64 // of the default ai.onnx domain
	Producer  string
	Arch      string      // the spec's name from metadata "hpa.arch" ("" when absent)
	Spec      *model.Spec // the full spec from metadata, nil when absent
	InputSize int         // from metadata "hpa.input_size", 0 when absent
	Inputs    []ValueInfo // graph inputs that are not initializers
	Outputs   []ValueInfo
	// ParamCount counts initializer elements except BatchNorm buffers (running_mean, running_var,
	// num_batches_tracked): timm's parameter count for models Export wrote.
	ParamCount   int64
	Initializers int   // number of initializer tensors
	Elements     int64 // elements over all initializers
	Nodes        int
	Metadata     map[string]string
}

// Info reads a model and summarizes it.
func Info(r io.Reader) (*FileInfo, error) {
	m, err := Decode(r, "onnx model")
	if err != nil {
		return nil, err
	}
	return info(m, "onnx model")
}

// InfoFile is Info on a file, naming it in errors.
func InfoFile(path string) (*FileInfo, error) {
	m, err := decodeFile(path)
	if err != nil {
		return nil, err
	}
	return info(m, path)
}

func info(m *onnxpb.ModelProto, name string) (*FileInfo, error) {
	g := m.GetGraph()
	mi := &FileInfo{
		IRVersion: m.GetIrVersion(), Producer: m.GetProducerName(), Nodes: len(g.GetNode()),
		Initializers: len(g.GetInitializer()), Metadata: map[string]string{},
	}
	for _, o := range m.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			mi.Opset = o.GetVersion()
		}
	}
	for _, p := range m.GetMetadataProps() {
		mi.Metadata[p.GetKey()] = p.GetValue()
	}
	if a, ok := mi.Metadata[MetaArch]; ok {
		var s model.Spec
		if err := json.Unmarshal([]byte(a), &s); err != nil {
			return nil, &ReadError{Name: name, Reason: "metadata " + MetaArch + " is not a spec", Err: err}
		}
		mi.Spec, mi.Arch = &s, s.Name
	}
	if v, ok := mi.Metadata[MetaInputSize]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, &ReadError{Name: name, Reason: fmt.Sprintf("metadata %s = %q is not a positive size", MetaInputSize, v)}
		}
		mi.InputSize = n
	}
	isInit := make(map[string]bool)
	for _, t := range g.GetInitializer() {
		isInit[t.GetName()] = true
		n := int64(1)
		for _, d := range t.GetDims() {
			n *= d
		}
		mi.Elements += n
		tn := t.GetName()
		if !strings.HasSuffix(tn, ".running_mean") && !strings.HasSuffix(tn, ".running_var") && !strings.HasSuffix(tn, ".num_batches_tracked") {
			mi.ParamCount += n
		}
	}
	for _, v := range g.GetInput() {
		if !isInit[v.GetName()] {
			mi.Inputs = append(mi.Inputs, valueInfoOf(v))
		}
	}
	for _, v := range g.GetOutput() {
		mi.Outputs = append(mi.Outputs, valueInfoOf(v))
	}
	return mi, nil
}

func valueInfoOf(v *onnxpb.ValueInfoProto) ValueInfo {
	vi := ValueInfo{Name: v.GetName()}
	tt := v.GetType().GetTensorType()
	if tt == nil {
		vi.ElemType = "non-tensor"
		return vi
	}
	vi.ElemType = onnxpb.TensorProto_DataType(tt.GetElemType()).String()
	for _, d := range tt.GetShape().GetDim() {
		vi.Shape = append(vi.Shape, Dim{Value: d.GetDimValue(), Param: d.GetDimParam()})
	}
	return vi
}
