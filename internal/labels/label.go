package labels

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/hpa-plates/hpa/internal/pipeline"
)

// Schemas of the JSON documents written per sample.
const (
	LabelSchema = "hpa.label/v1"
	ErrorSchema = "hpa.error/v1"
)

// ProbDecimals is the number of decimals probabilities are written with in label JSON.
const ProbDecimals = 6

// Label is the result of labeling one sample, written as OUT/<sample_id>.json. The encoding is
// deterministic: the same input files and model give the same bytes (fixed key order, probabilities
// with exactly ProbDecimals decimals, no timestamps or timings). Fields, in order:
//
//	schema         "hpa.label/v1"
//	sample_id      the sample id (the file-name prefix before _red/_green/_blue/_yellow)
//	sources        the four channel files in red, green, blue, yellow order:
//	                 channel  "red" | "green" | "blue" | "yellow"
//	                 name     file (or object) base name, e.g. "<id>_green.png"
//	                 size     bytes
//	                 sha256   hex digest of the file contents
//	model          the model set that produced the label:
//	                 name, version   from the manifest
//	                 manifest_digest "sha256:<hex>" of the canonical manifest
//	                 members         number of ensemble members averaged
//	                 tta_views       number of test-time augmentation views averaged (1, 2, 4, 8)
//	                 arch            architecture name, e.g. "seresnext50_32x4d"
//	thresholds     how probabilities became labels:
//	                 mode            "uniform" | "per_class" | "rate"
//	                 values          one threshold per class (class k predicted when p > values[k])
//	                 at_least_top    whether the most probable class is predicted when none passes
//	probabilities  one entry per class, in class id order: class_id, name, p (mean sigmoid over
//	               members and views, rounded to 6 decimals)
//	predicted      the predicted classes (class_id, name), ascending class id
type Label struct {
	Schema        string            `json:"schema"`
	SampleID      string            `json:"sample_id"`
	Sources       []Source          `json:"sources"`
	Model         ModelInfo         `json:"model"`
	Thresholds    AppliedThresholds `json:"thresholds"`
	Probabilities []ClassProb       `json:"probabilities"`
	Predicted     []ClassRef        `json:"predicted"`
}

// Source identifies one channel file of a sample.
type Source struct {
	Channel string `json:"channel"`
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
}

// ModelInfo identifies the model set in label and error JSON.
type ModelInfo struct {
	Name           string `json:"name"`
	Version        string `json:"version"`
	ManifestDigest string `json:"manifest_digest"`
	Members        int    `json:"members"`
	TTAViews       int    `json:"tta_views"`
	Arch           string `json:"arch"`
}

// AppliedThresholds records the thresholds used.
type AppliedThresholds struct {
	Mode       string    `json:"mode"`
	Values     []float64 `json:"values"`
	AtLeastTop bool      `json:"at_least_top"`
}

// ClassProb is one class probability.
type ClassProb struct {
	ClassID int    `json:"class_id"`
	Name    string `json:"name"`
	P       Prob   `json:"p"`
}

// ClassRef is one predicted class.
type ClassRef struct {
	ClassID int    `json:"class_id"`
	Name    string `json:"name"`
}

// Prob is a probability written with exactly ProbDecimals decimals.
type Prob float64

// MarshalJSON writes the value rounded to ProbDecimals decimals in fixed notation.
func (p Prob) MarshalJSON() ([]byte, error) {
	f := float64(p)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("probability %v is not finite", f)
	}
	return strconv.AppendFloat(nil, f, 'f', ProbDecimals, 64), nil
}

// RoundProb rounds to ProbDecimals decimals, as written.
func RoundProb(p float64) float64 {
	s := strconv.FormatFloat(p, 'f', ProbDecimals, 64)
	r, _ := strconv.ParseFloat(s, 64)
	return r
}

// DocumentError is returned for a label or error document that cannot be built, written or parsed.
type DocumentError struct {
	SampleID string // may be empty when the document has none
	Reason   string
}

func (e *DocumentError) Error() string {
	if e.SampleID == "" {
		return "label: " + e.Reason
	}
	return fmt.Sprintf("label %s: %s", e.SampleID, e.Reason)
}

// NewLabel assembles the label of one sample from its averaged probabilities (one per class of
// ClassNames) and the thresholds; predicted classes come from th.Apply on the probabilities as
// written (rounded), so a reader re-applying the thresholds to the JSON gets the same prediction.
func NewLabel(sampleID string, sources []Source, model ModelInfo, th Thresholds, probs []float64) (Label, error) {
	if len(probs) != NumClasses {
		return Label{}, &DocumentError{sampleID, fmt.Sprintf("%d probabilities for %d classes", len(probs), NumClasses)}
	}
	if err := th.Validate(NumClasses); err != nil {
		return Label{}, &DocumentError{sampleID, err.Error()}
	}
	l := Label{
		Schema: LabelSchema, SampleID: sampleID, Sources: slices.Clone(sources), Model: model,
		Thresholds:    AppliedThresholds{Mode: th.Mode, Values: slices.Clone(th.Values), AtLeastTop: th.AtLeastTop},
		Probabilities: make([]ClassProb, NumClasses),
		Predicted:     []ClassRef{},
	}
	rounded := make([]float64, NumClasses)
	for k, p := range probs {
		if math.IsNaN(p) || p < 0 || p > 1 {
			return Label{}, &DocumentError{sampleID, fmt.Sprintf("class %d probability %v is outside [0, 1]", k, p)}
		}
		rounded[k] = RoundProb(p)
		l.Probabilities[k] = ClassProb{ClassID: k, Name: ClassNames[k], P: Prob(rounded[k])}
	}
	for _, k := range th.Apply(rounded) {
		l.Predicted = append(l.Predicted, ClassRef{ClassID: k, Name: ClassNames[k]})
	}
	return l, l.validate()
}

// PredictedIDs returns the predicted class ids.
func (l Label) PredictedIDs() []int {
	ids := make([]int, len(l.Predicted))
	for i, c := range l.Predicted {
		ids[i] = c.ClassID
	}
	return ids
}

func (l Label) validate() error {
	bad := func(format string, args ...any) error {
		return &DocumentError{l.SampleID, fmt.Sprintf(format, args...)}
	}
	if l.Schema != LabelSchema {
		return bad("schema %q, want %q", l.Schema, LabelSchema)
	}
	if l.SampleID == "" {
		return bad("empty sample_id")
	}
	if len(l.Probabilities) != NumClasses {
		return bad("%d probabilities, want %d", len(l.Probabilities), NumClasses)
	}
	for k, c := range l.Probabilities {
		if c.ClassID != k || c.Name != ClassNames[k] {
			return bad("probability %d is class %d %q, want class %d %q", k, c.ClassID, c.Name, k, ClassNames[k])
		}
		if p := float64(c.P); math.IsNaN(p) || p < 0 || p > 1 {
			return bad("class %d probability %v is outside [0, 1]", k, p)
		}
	}
	if len(l.Thresholds.Values) != NumClasses {
		return bad("%d threshold values, want %d", len(l.Thresholds.Values), NumClasses)
	}
	prev := -1
	for _, c := range l.Predicted {
		if c.ClassID <= prev || c.ClassID >= NumClasses || c.Name != ClassNames[c.ClassID] {
			return bad("predicted class %d %q out of order, out of range or misnamed", c.ClassID, c.Name)
		}
		prev = c.ClassID
	}
	return nil
}

func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// MarshalLabel encodes a label deterministically (2-space indented JSON, trailing newline).
func MarshalLabel(l Label) ([]byte, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	// nil and empty lists encode the same way ([]), so a parsed label re-encodes to the same bytes.
	if l.Sources == nil {
		l.Sources = []Source{}
	}
	if l.Predicted == nil {
		l.Predicted = []ClassRef{}
	}
	b, err := encodeJSON(l)
	if err != nil {
		return nil, &DocumentError{l.SampleID, err.Error()}
	}
	return b, nil
}

// ParseLabel decodes and validates label JSON.
func ParseLabel(b []byte) (Label, error) {
	var l Label
	if err := decodeJSON(b, &l); err != nil {
		return Label{}, &DocumentError{"", "parse: " + err.Error()}
	}
	return l, l.validate()
}

// ErrorRecord is the document written as OUT/<sample_id>.error.json for a sample that could not be
// labeled. Fields: schema ("hpa.error/v1"), sample_id, file (the local file at fault) or object (the
// object key at fault, when input came from object storage), kind (e.g. "corrupt", "truncated",
// "missing_channel", "inference"; the pipeline.ErrKind values for input problems), reason (the
// detail) and model (the model set that was to label it).
type ErrorRecord struct {
	Schema   string     `json:"schema"`
	SampleID string     `json:"sample_id"`
	File     string     `json:"file,omitempty"`
	Object   string     `json:"object,omitempty"`
	Kind     string     `json:"kind"`
	Reason   string     `json:"reason"`
	Model    *ModelInfo `json:"model,omitempty"`
}

// KindInference is the error kind of a failure inside the model runner.
const KindInference pipeline.ErrKind = "inference"

// NewErrorRecord describes err for sample id. A *pipeline.InputError (anywhere in err's chain) gives the file
// (as its base name, so records do not depend on where the input lay), kind and reason; any other
// error gets kind "inference" with err's text as the reason.
func NewErrorRecord(sampleID string, err error, model *ModelInfo) ErrorRecord {
	r := ErrorRecord{Schema: ErrorSchema, SampleID: sampleID, Model: model}
	var ie *pipeline.InputError
	if errors.As(err, &ie) {
		if ie.File != sampleID {
			r.File = filepath.Base(ie.File)
		}
		r.Kind, r.Reason = string(ie.Kind), ie.Reason
	} else {
		r.Kind = string(KindInference)
		if err != nil {
			r.Reason = err.Error()
		}
	}
	return r
}

func (r ErrorRecord) validate() error {
	switch {
	case r.Schema != ErrorSchema:
		return &DocumentError{r.SampleID, fmt.Sprintf("error schema %q, want %q", r.Schema, ErrorSchema)}
	case r.SampleID == "":
		return &DocumentError{"", "error record with empty sample_id"}
	case r.Kind == "":
		return &DocumentError{r.SampleID, "error record with empty kind"}
	}
	return nil
}

// MarshalError encodes an error record deterministically.
func MarshalError(r ErrorRecord) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	return encodeJSON(r)
}

// ParseErrorRecord decodes and validates error JSON.
func ParseErrorRecord(b []byte) (ErrorRecord, error) {
	var r ErrorRecord
	if err := decodeJSON(b, &r); err != nil {
		return ErrorRecord{}, &DocumentError{"", "parse error record: " + err.Error()}
	}
	return r, r.validate()
}

// DescribeFile reads a channel file and returns its Source (base name, size, sha256).
func DescribeFile(ch pipeline.Channel, path string) (Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return Source{}, &pipeline.InputError{File: path, Kind: pipeline.KindIO, Reason: err.Error(), Err: err}
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Source{}, &pipeline.InputError{File: path, Kind: pipeline.KindIO, Reason: err.Error(), Err: err}
	}
	return Source{Channel: ch.String(), Name: filepath.Base(path), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// SourceOf describes in-memory channel bytes (e.g. an object fetched from storage).
func SourceOf(ch pipeline.Channel, name string, data []byte) Source {
	sum := sha256.Sum256(data)
	return Source{Channel: ch.String(), Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}
