package model

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Tensor is a dense float32 tensor read from a checkpoint.
type Tensor struct {
	Shape []int
	Data  []float32
}

// MaxSafetensorsHeader bounds the JSON header (the safetensors reference implementation uses 100 MB).
const MaxSafetensorsHeader = 100 << 20

// SafetensorsError names the file (and the tensor, when one is at fault) and the reason.
type SafetensorsError struct {
	Path   string
	Tensor string // empty when the file as a whole is at fault
	Reason string
	Err    error // underlying error, if any
}

func (e *SafetensorsError) Error() string {
	s := "safetensors " + e.Path
	if e.Tensor != "" {
		s += ": tensor " + e.Tensor
	}
	s += ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *SafetensorsError) Unwrap() error { return e.Err }

type stEntry struct {
	DType       string  `json:"dtype"`
	Shape       []int   `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

var stDTypeSize = map[string]int64{"F32": 4, "F16": 2, "BF16": 2}

// ReadSafetensors reads every tensor of a safetensors file as float32 (F32, F16 and BF16 are
// accepted; other dtypes are an error naming the tensor). "__metadata__" is skipped.
func ReadSafetensors(path string) (map[string]Tensor, error) {
	fail := func(tensor, reason string, err error) error {
		return &SafetensorsError{Path: path, Tensor: tensor, Reason: reason, Err: err}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fail("", "open", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fail("", "stat", err)
	}
	size := st.Size()
	var hb [8]byte
	if _, err := io.ReadFull(f, hb[:]); err != nil {
		return nil, fail("", "file too short for the 8-byte header length", err)
	}
	n := binary.LittleEndian.Uint64(hb[:])
	if n < 2 || n > MaxSafetensorsHeader {
		return nil, fail("", fmt.Sprintf("header length %d outside [2, %d]", n, MaxSafetensorsHeader), nil)
	}
	if int64(n) > size-8 {
		return nil, fail("", fmt.Sprintf("header length %d exceeds the file (%d bytes)", n, size), nil)
	}
	header := make([]byte, n)
	if _, err := io.ReadFull(f, header); err != nil {
		return nil, fail("", "read header", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(header, &raw); err != nil {
		return nil, fail("", "header is not a JSON object", err)
	}
	dataStart := 8 + int64(n)
	dataLen := size - dataStart
	names := make([]string, 0, len(raw))
	for name := range raw {
		if name != "__metadata__" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	type span struct {
		begin, end int64
		name       string
	}
	spans := make([]span, 0, len(names))
	out := make(map[string]Tensor, len(names))
	for _, name := range names {
		var e stEntry
		if err := json.Unmarshal(raw[name], &e); err != nil {
			return nil, fail(name, "bad header entry", err)
		}
		es, ok := stDTypeSize[e.DType]
		if !ok {
			return nil, fail(name, fmt.Sprintf("dtype %q not supported (F32, F16, BF16)", e.DType), nil)
		}
		if len(e.DataOffsets) != 2 {
			return nil, fail(name, "data_offsets must have 2 entries", nil)
		}
		count := int64(1)
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && count > math.MaxInt32/int64(d)) {
				return nil, fail(name, fmt.Sprintf("bad shape %v", e.Shape), nil)
			}
			count *= int64(d)
		}
		b, end := e.DataOffsets[0], e.DataOffsets[1]
		if b < 0 || end < b || end > dataLen {
			return nil, fail(name, fmt.Sprintf("data_offsets [%d, %d] outside the %d data bytes", b, end, dataLen), nil)
		}
		if end-b != count*es {
			return nil, fail(name, fmt.Sprintf("%d bytes for %s %v (want %d)", end-b, e.DType, e.Shape, count*es), nil)
		}
		buf := make([]byte, end-b)
		if _, err := f.ReadAt(buf, dataStart+b); err != nil {
			return nil, fail(name, "read data", err)
		}
		spans = append(spans, span{b, end, name})
		out[name] = Tensor{Shape: append([]int{}, e.Shape...), Data: decodeFloats(buf, e.DType)}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].begin < spans[j].begin })
	for i := 1; i < len(spans); i++ {
		if spans[i].begin < spans[i-1].end {
			return nil, fail(spans[i].name, "data overlaps tensor "+spans[i-1].name, nil)
		}
	}
	return out, nil
}

func decodeFloats(b []byte, dtype string) []float32 {
	switch dtype {
	case "F32":
		v := make([]float32, len(b)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return v
	case "BF16":
		v := make([]float32, len(b)/2)
		for i := range v {
			v[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
		return v
	default: // F16
		v := make([]float32, len(b)/2)
		for i := range v {
			v[i] = halfToFloat(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return v
	}
}

// halfToFloat converts IEEE 754 binary16 to float32 exactly (subnormals, Inf and NaN included).
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: mant * 2^-24
		f := float32(mant) / (1 << 24)
		if sign != 0 {
			f = -f
		}
		return f
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	default:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	}
}

// WriteSafetensors writes tensors as F32 safetensors (names sorted, data contiguous), atomically.
func WriteSafetensors(path string, tensors map[string]Tensor, metadata map[string]string) error {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		if n == "__metadata__" {
			return &SafetensorsError{Path: path, Tensor: n, Reason: "reserved name"}
		}
		names = append(names, n)
	}
	sort.Strings(names)
	header := make(map[string]any, len(names)+1)
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	for _, n := range names {
		t := tensors[n]
		count := 1
		for _, d := range t.Shape {
			count *= d
		}
		if count != len(t.Data) {
			return &SafetensorsError{Path: path, Tensor: n, Reason: fmt.Sprintf("shape %v holds %d values, data has %d", t.Shape, count, len(t.Data))}
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[n] = stEntry{DType: "F32", Shape: shape, DataOffsets: []int64{off, off + 4*int64(count)}}
		off += 4 * int64(count)
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return &SafetensorsError{Path: path, Reason: "encode header", Err: err}
	}
	for len(hj)%8 != 0 { // the format pads the header with spaces to 8-byte alignment
		hj = append(hj, ' ')
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".safetensors-*")
	if err != nil {
		return &SafetensorsError{Path: path, Reason: "create", Err: err}
	}
	defer os.Remove(tmp.Name())
	buf := make([]byte, 0, 8+len(hj))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(hj)))
	buf = append(buf, hj...)
	for _, n := range names {
		for _, x := range tensors[n].Data {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
		}
		if len(buf) > 1<<24 {
			if _, err := tmp.Write(buf); err != nil {
				tmp.Close()
				return &SafetensorsError{Path: path, Reason: "write", Err: err}
			}
			buf = buf[:0]
		}
	}
	if _, err := tmp.Write(buf); err != nil {
		tmp.Close()
		return &SafetensorsError{Path: path, Reason: "write", Err: err}
	}
	if err := tmp.Close(); err != nil {
		return &SafetensorsError{Path: path, Reason: "write", Err: err}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return &SafetensorsError{Path: path, Reason: "rename", Err: err}
	}
	return nil
}

// SafetensorsFromWeights shapes weights as the spec's tensors, for WriteSafetensors.
func SafetensorsFromWeights(spec Spec, w Weights) (map[string]Tensor, error) {
	if err := w.Check(spec); err != nil {
		return nil, err
	}
	out := make(map[string]Tensor)
	for _, t := range spec.Tensors() {
		if v, ok := w[t.Name]; ok {
			out[t.Name] = Tensor{Shape: append([]int{}, t.Shape...), Data: v}
		}
	}
	return out, nil
}

// AdaptReport tells what WeightsFromSafetensors changed to fit a checkpoint to the spec.
type AdaptReport struct {
	Source string // the checkpoint path
	Loaded int    // tensors taken from the checkpoint (possibly adapted)
	// StemAdapted: conv1.weight had StemFrom input channels; the RGB mean was copied to each of
	// the spec's StemTo channels.
	StemAdapted        bool
	StemFrom, StemTo   int
	ClassifierReplaced bool // the checkpoint's classifier (ClassesFrom classes) was replaced by the seeded init
	ClassesFrom        int
	ClassesTo          int
	Missing            []string // spec tensors absent from the checkpoint, seeded init used
	Unknown            []string // checkpoint tensors the spec does not have, ignored
}

func (r *AdaptReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d tensors loaded", r.Source, r.Loaded)
	if r.StemAdapted {
		fmt.Fprintf(&b, "; conv1.weight adapted from %d to %d input channels (mean over RGB)", r.StemFrom, r.StemTo)
	}
	if r.ClassifierReplaced {
		fmt.Fprintf(&b, "; classifier of %d classes replaced by a fresh one of %d", r.ClassesFrom, r.ClassesTo)
	}
	if len(r.Missing) > 0 {
		fmt.Fprintf(&b, "; %d missing (initialized): %s", len(r.Missing), strings.Join(r.Missing, ", "))
	}
	if len(r.Unknown) > 0 {
		fmt.Fprintf(&b, "; %d unknown (ignored): %s", len(r.Unknown), strings.Join(r.Unknown, ", "))
	}
	return b.String()
}

// ErrShapeMismatch is wrapped by the error WeightsFromSafetensors returns when a checkpoint tensor
// has a shape that no adaptation explains.
var ErrShapeMismatch = errors.New("shape mismatch")

// WeightsFromSafetensors loads a timm-named checkpoint (e.g. an ImageNet seresnext50_32x4d) into
// weights for spec. A 3-channel stem conv1.weight [C,3,k,k] becomes spec.InChans channels, each the
// mean over the RGB channels; a classifier of another class count is replaced by InitWeights(spec,
// seed)'s; tensors the checkpoint lacks get the seeded init; names the spec lacks are ignored. All of
// it is in the report. Any other shape mismatch is an error wrapping ErrShapeMismatch.
func WeightsFromSafetensors(path string, spec Spec, seed int64) (Weights, *AdaptReport, error) {
	if err := spec.Validate(); err != nil {
		return nil, nil, err
	}
	st, err := ReadSafetensors(path)
	if err != nil {
		return nil, nil, err
	}
	rep := &AdaptReport{Source: path}
	w := make(Weights)
	specTensors := spec.Tensors()
	known := make(map[string]bool, len(specTensors))
	for _, t := range specTensors {
		known[t.Name] = true
	}
	for name := range st {
		if !known[name] {
			rep.Unknown = append(rep.Unknown, name)
		}
	}
	sort.Strings(rep.Unknown)
	var fresh Weights // the seeded init, made on first need
	initOf := func(name string) []float32 {
		if fresh == nil {
			fresh = InitWeights(spec, seed)
		}
		return fresh[name]
	}
	mismatch := func(name string, got, want []int) error {
		return &SafetensorsError{Path: path, Tensor: name, Reason: fmt.Sprintf("shape %v, arch %s needs %v", got, spec.Name, want), Err: ErrShapeMismatch}
	}
	classifier := func(name string, got, want []int) bool {
		switch name {
		case "fc.weight":
			return len(got) == 2 && got[1] == want[1] && got[0] != want[0]
		case "fc.bias":
			return len(got) == 1 && got[0] != want[0]
		}
		return false
	}
	for _, t := range specTensors {
		if t.Kind == NumBatches {
			continue
		}
		ct, ok := st[t.Name]
		switch {
		case !ok:
			rep.Missing = append(rep.Missing, t.Name)
			w[t.Name] = initOf(t.Name)
		case slices.Equal(ct.Shape, t.Shape):
			w[t.Name] = ct.Data
			rep.Loaded++
		case t.Name == "conv1.weight" && len(ct.Shape) == 4 && ct.Shape[1] == 3 &&
			ct.Shape[0] == t.Shape[0] && ct.Shape[2] == t.Shape[2] && ct.Shape[3] == t.Shape[3]:
			w[t.Name] = adaptStem(ct, t.Shape[1])
			rep.Loaded++
			rep.StemAdapted, rep.StemFrom, rep.StemTo = true, 3, t.Shape[1]
		case classifier(t.Name, ct.Shape, t.Shape):
			w[t.Name] = initOf(t.Name)
			rep.ClassifierReplaced, rep.ClassesFrom, rep.ClassesTo = true, ct.Shape[0], t.Shape[0]
		default:
			return nil, nil, mismatch(t.Name, ct.Shape, t.Shape)
		}
	}
	if rep.ClassifierReplaced {
		// Both halves of the classifier go together: a kept bias of another size cannot exist, but a
		// kept bias of the right size beside a replaced weight would mix two models.
		w["fc.weight"], w["fc.bias"] = initOf("fc.weight"), initOf("fc.bias")
	}
	if err := w.Check(spec); err != nil {
		return nil, nil, &SafetensorsError{Path: path, Reason: "weights unusable", Err: err}
	}
	return w, rep, nil
}

// adaptStem turns [C,3,k,k] into [C,n,k,k]: every new input channel is the mean of the 3 RGB ones.
func adaptStem(t Tensor, n int) []float32 {
	c, kk := t.Shape[0], t.Shape[2]*t.Shape[3]
	out := make([]float32, c*n*kk)
	for o := 0; o < c; o++ {
		for k := 0; k < kk; k++ {
			m := (t.Data[(o*3+0)*kk+k] + t.Data[(o*3+1)*kk+k] + t.Data[(o*3+2)*kk+k]) / 3
			for i := 0; i < n; i++ {
				out[(o*n+i)*kk+k] = m
			}
		}
	}
	return out
}
