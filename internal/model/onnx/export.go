// Package onnx writes SE-ResNeXt models (model.Spec + model.Weights) as ONNX graphs that ONNX
// Runtime loads, and reads back their initializers and a summary. Initializers carry the timm
// state-dict names, so a graph's weights map one-to-one onto a PyTorch checkpoint.
package onnx

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx/onnxpb"
)

// MetaArch is the metadata_props key holding the model.Spec as JSON.
const MetaArch = "hpa.arch"

// MetaInputSize is the metadata_props key holding the square input size in pixels.
const MetaInputSize = "hpa.input_size"

// Producer is the producer_name written into every model.
const Producer = "hpa"

// BNEpsilon is the BatchNorm epsilon of timm's (PyTorch's) BatchNorm2d.
const BNEpsilon = 1e-5

// ExportOptions shape the exported graph. Zero values take the defaults in brackets.
type ExportOptions struct {
	InputSize  int    // square input H = W in pixels (required, >= 32)
	InputName  string // ["input"]
	OutputName string // ["logits"]
	Opset      int    // ai.onnx opset [17]; 13..21 are accepted
	DocString  string // free text stored in the model
}

func (o ExportOptions) withDefaults() ExportOptions {
	if o.InputName == "" {
		o.InputName = "input"
	}
	if o.OutputName == "" {
		o.OutputName = "logits"
	}
	if o.Opset == 0 {
		o.Opset = 17
	}
	return o
}

// irVersion is the lowest IR version that carries the opset (onnx/helper.py's VERSION_TABLE).
func irVersion(opset int) int64 {
	switch {
	case opset <= 14:
		return 7
	case opset <= 18:
		return 8
	case opset <= 20:
		return 9
	default:
		return 10
	}
}

// ExportError is returned for a spec, weights or options Export cannot use.
type ExportError struct {
	Arch   string
	Reason string
	Err    error
}

func (e *ExportError) Error() string {
	s := "onnx export of " + e.Arch + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ExportError) Unwrap() error { return e.Err }

// Export writes the network as an ONNX model: input float32 [batch, InChans, S, S] (batch dynamic),
// output logits [batch, NumClasses] without sigmoid. Initializers are the weights under their timm
// names; metadata_props hold the spec (MetaArch) and the input size (MetaInputSize).
func Export(w io.Writer, spec model.Spec, weights model.Weights, opt ExportOptions) error {
	m, err := Build(spec, weights, opt)
	if err != nil {
		return err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return &ExportError{Arch: spec.Name, Reason: "encode", Err: err}
	}
	if _, err := w.Write(b); err != nil {
		return &ExportError{Arch: spec.Name, Reason: "write", Err: err}
	}
	return nil
}

// Build returns the ONNX ModelProto Export encodes.
func Build(spec model.Spec, weights model.Weights, opt ExportOptions) (*onnxpb.ModelProto, error) {
	opt = opt.withDefaults()
	fail := func(reason string, err error) error {
		return &ExportError{Arch: spec.Name, Reason: reason, Err: err}
	}
	if err := spec.Validate(); err != nil {
		return nil, fail("invalid spec", err)
	}
	if err := weights.Check(spec); err != nil {
		return nil, fail("weights do not fit", err)
	}
	if opt.InputSize < 32 {
		return nil, fail(fmt.Sprintf("input size %d: need at least 32 pixels (5 stride-2 stages)", opt.InputSize), nil)
	}
	if opt.Opset < 13 || opt.Opset > 21 {
		return nil, fail(fmt.Sprintf("opset %d not supported (13..21)", opt.Opset), nil)
	}
	if opt.InputName == opt.OutputName {
		return nil, fail("input and output names must differ", nil)
	}
	archJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, fail("encode spec", err)
	}
	g := &graph{}
	for _, t := range spec.Tensors() {
		if t.Kind == model.NumBatches {
			continue
		}
		g.initializer(t.Name, t.Shape, weights[t.Name])
	}
	x := opt.InputName
	// Stem: conv1 7x7/2 -> bn1 -> relu -> 3x3/2 max pool (or conv + BN + relu, timm's replace_stem_pool).
	x = g.convBN(x, "conv1", "bn1", 7, 2, 3, 1, true)
	if spec.Stem == model.StemConv {
		x = g.convBN(x, "maxpool.0", "maxpool.1", 3, 2, 1, 1, true)
	} else {
		x = g.node("MaxPool", "maxpool", []string{x}, ints("kernel_shape", 3, 3), ints("strides", 2, 2), ints("pads", 1, 1, 1, 1))
	}
	for _, b := range spec.Blocks() {
		p := b.Prefix
		shortcut := x
		y := g.convBN(x, p+".conv1", p+".bn1", 1, 1, 0, 1, true)
		y = g.convBN(y, p+".conv2", p+".bn2", 3, b.Stride, 1, b.Groups, true)
		y = g.convBN(y, p+".conv3", p+".bn3", 1, 1, 0, 1, false)
		// Squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(mean(x))))).
		s := g.node("GlobalAveragePool", p+".se.pool", []string{y})
		s = g.node("Conv", p+".se.fc1", []string{s, p + ".se.fc1.weight", p + ".se.fc1.bias"}, ints("kernel_shape", 1, 1))
		s = g.node("Relu", p+".se.act", []string{s})
		s = g.node("Conv", p+".se.fc2", []string{s, p + ".se.fc2.weight", p + ".se.fc2.bias"}, ints("kernel_shape", 1, 1))
		s = g.node("Sigmoid", p+".se.gate", []string{s})
		y = g.node("Mul", p+".se", []string{y, s})
		if b.Downsample {
			shortcut = g.convBN(x, p+".downsample.0", p+".downsample.1", 1, b.Stride, 0, 1, false)
		}
		y = g.node("Add", p+".add", []string{y, shortcut})
		x = g.node("Relu", p+".act3", []string{y})
	}
	x = g.node("GlobalAveragePool", "global_pool", []string{x})
	x = g.node("Flatten", "flatten", []string{x}, intAttr("axis", 1))
	g.nodes = append(g.nodes, &onnxpb.NodeProto{
		Name: proto.String("fc"), OpType: proto.String("Gemm"),
		Input: []string{x, "fc.weight", "fc.bias"}, Output: []string{opt.OutputName},
		Attribute: []*onnxpb.AttributeProto{intAttr("transB", 1)},
	})
	batch := &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}}
	fixed := func(n int) *onnxpb.TensorShapeProto_Dimension {
		return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(n)}}
	}
	return &onnxpb.ModelProto{
		IrVersion:       proto.Int64(irVersion(opt.Opset)),
		OpsetImport:     []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(int64(opt.Opset))}},
		ProducerName:    proto.String(Producer),
		ProducerVersion: proto.String("1"),
		DocString:       nonEmpty(opt.DocString),
		Graph: &onnxpb.GraphProto{
			Name:        proto.String(spec.Name),
			Node:        g.nodes,
			Initializer: g.inits,
			Input:       []*onnxpb.ValueInfoProto{valueInfo(opt.InputName, batch, fixed(spec.InChans), fixed(opt.InputSize), fixed(opt.InputSize))},
			Output:      []*onnxpb.ValueInfoProto{valueInfo(opt.OutputName, batch, fixed(spec.NumClasses))},
		},
		MetadataProps: []*onnxpb.StringStringEntryProto{
			{Key: proto.String(MetaArch), Value: proto.String(string(archJSON))},
			{Key: proto.String(MetaInputSize), Value: proto.String(fmt.Sprint(opt.InputSize))},
		},
	}, nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

type graph struct {
	nodes []*onnxpb.NodeProto
	inits []*onnxpb.TensorProto
}

func (g *graph) initializer(name string, shape []int, data []float32) {
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	g.inits = append(g.inits, &onnxpb.TensorProto{
		Name: proto.String(name), Dims: dims,
		DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), RawData: raw,
	})
}

// node appends a one-output node; its output is named after the node.
func (g *graph) node(op, name string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	g.nodes = append(g.nodes, &onnxpb.NodeProto{
		Name: proto.String(name), OpType: proto.String(op),
		Input: inputs, Output: []string{name}, Attribute: attrs,
	})
	return name
}

// convBN appends Conv (no bias) + inference BatchNormalization (+ Relu).
func (g *graph) convBN(x, conv, bn string, k, stride, pad, groups int, relu bool) string {
	attrs := []*onnxpb.AttributeProto{
		ints("kernel_shape", k, k), ints("strides", stride, stride),
		ints("pads", pad, pad, pad, pad), ints("dilations", 1, 1),
	}
	if groups != 1 {
		attrs = append(attrs, intAttr("group", groups))
	}
	x = g.node("Conv", conv, []string{x, conv + ".weight"}, attrs...)
	x = g.node("BatchNormalization", bn, []string{x, bn + ".weight", bn + ".bias", bn + ".running_mean", bn + ".running_var"},
		&onnxpb.AttributeProto{Name: proto.String("epsilon"), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(BNEpsilon)})
	if relu {
		x = g.node("Relu", bn+".act", []string{x})
	}
	return x
}

func ints(name string, v ...int) *onnxpb.AttributeProto {
	a := &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum()}
	for _, x := range v {
		a.Ints = append(a.Ints, int64(x))
	}
	return a
}

func intAttr(name string, v int) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(int64(v))}
}

func valueInfo(name string, dims ...*onnxpb.TensorShapeProto_Dimension) *onnxpb.ValueInfoProto {
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
			Shape:    &onnxpb.TensorShapeProto{Dim: dims},
		}}},
	}
}

// errNotModel marks input that does not decode as an ONNX model.
var errNotModel = errors.New("not an ONNX model")
