package ort

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	onnx "github.com/yalue/onnxruntime_go"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// MemberError reports a member file that is missing, does not match its manifest digest or does not
// load.
type MemberError struct {
	File   string
	Reason string
}

func (e *MemberError) Error() string { return fmt.Sprintf("ort: member %s: %s", e.File, e.Reason) }

// SampleError reports one sample of a Predict batch that could not be preprocessed.
type SampleError struct {
	Index    int
	SampleID string
	Err      error
}

func (e *SampleError) Error() string {
	return fmt.Sprintf("ort: sample %d (%s): %v", e.Index, e.SampleID, e.Err)
}
func (e *SampleError) Unwrap() error { return e.Err }

// ErrClosed is returned by Predict after Close.
var ErrClosed = errors.New("ort: ensemble is closed")

// Ensemble is a loaded model set: one ONNX Runtime session per member. Predict may be called from
// several goroutines; runs are serialized (each run already uses ONNX Runtime's thread pool).
type Ensemble struct {
	manifest *model.Manifest
	digest   string
	dir      string
	order    []pipeline.Channel
	norm     pipeline.Norm
	views    int
	maxBatch int

	th labels.Thresholds

	mu       sync.Mutex
	sessions []*onnx.DynamicAdvancedSession
	input    []float32 // up to maxBatch * views * C * S * S, grown on demand
	output   []float32 // up to maxBatch * views * classes
	sample   []float32 // C * S * S
}

// Load reads and validates the manifest at manifestPath, checks every member's sha256 and creates
// one ONNX Runtime session per member.
func Load(manifestPath string, opt Options) (*Ensemble, error) {
	m, err := model.ReadManifest(manifestPath)
	if err != nil {
		return nil, err
	}
	return New(m, filepath.Dir(manifestPath), opt)
}

// New builds an ensemble from a manifest whose member files are relative to dir.
func New(m *model.Manifest, dir string, opt Options) (*Ensemble, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	digest, err := m.Digest()
	if err != nil {
		return nil, err
	}
	order, err := pipeline.ParseChannelOrder(m.ChannelOrder)
	if err != nil {
		return nil, fmt.Errorf("model manifest %s: %w", m.Name, err)
	}
	if m.InputName == "" || m.OutputName == "" {
		return nil, fmt.Errorf("model manifest %s: input_name and output_name must be set", m.Name)
	}
	th, err := labels.NewThresholds(m.Thresholds.Mode, m.Thresholds.Uniform, m.Thresholds.PerClass, m.Thresholds.AtLeastTop, m.Arch.NumClasses)
	if err != nil {
		return nil, fmt.Errorf("model manifest %s: %w", m.Name, err)
	}
	if opt.MaxBatch < 0 {
		return nil, fmt.Errorf("ort: max batch %d is negative", opt.MaxBatch)
	}
	if opt.MaxBatch == 0 {
		opt.MaxBatch = DefaultMaxBatch
	}
	// Verify every member before touching ONNX Runtime: a tampered set fails the same way everywhere.
	data := make([][]byte, len(m.Members))
	for i, mem := range m.Members {
		if data[i], err = readMember(dir, mem); err != nil {
			return nil, err
		}
	}
	if err := initEnv(opt.Library); err != nil {
		return nil, err
	}
	so, err := sessionOptions(opt)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	e := &Ensemble{
		manifest: m, digest: digest, dir: dir, order: order, th: th,
		norm:  pipeline.Norm{Mean: m.Normalization.Mean, Std: m.Normalization.Std},
		views: m.TTAViews, maxBatch: opt.MaxBatch,
	}
	for i, mem := range m.Members {
		s, err := onnx.NewDynamicAdvancedSessionWithONNXData(data[i], []string{m.InputName}, []string{m.OutputName}, so)
		if err != nil {
			e.Close()
			var pe *ProviderError
			if errors.As(err, &pe) {
				return nil, err
			}
			return nil, &MemberError{mem.File, "ONNX Runtime cannot load it: " + err.Error()}
		}
		e.sessions = append(e.sessions, s)
	}
	c, sz := len(order), m.InputSize
	e.sample = make([]float32, c*sz*sz)
	return e, nil
}

func readMember(dir string, mem model.Member) ([]byte, error) {
	if mem.File == "" || filepath.IsAbs(mem.File) || strings.HasPrefix(filepath.Clean(mem.File), "..") {
		return nil, &MemberError{mem.File, "file must be a path inside the manifest's directory"}
	}
	path := filepath.Join(dir, mem.File)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &MemberError{path, err.Error()}
	}
	sum := sha256.Sum256(b)
	got := hex.EncodeToString(sum[:])
	if !strings.EqualFold(got, mem.SHA256) {
		return nil, &MemberError{path, fmt.Sprintf("sha256 %s does not match the manifest's %s", got, mem.SHA256)}
	}
	return b, nil
}

// Manifest returns the loaded manifest (do not modify it).
func (e *Ensemble) Manifest() *model.Manifest { return e.manifest }

// Digest is the manifest digest ("sha256:<hex>").
func (e *Ensemble) Digest() string { return e.digest }

// Info describes the model set for label JSON.
func (e *Ensemble) Info() labels.ModelInfo {
	return labels.ModelInfo{
		Name: e.manifest.Name, Version: e.manifest.Version, ManifestDigest: e.digest,
		Members: len(e.manifest.Members), TTAViews: e.views, Arch: e.manifest.Arch.Name,
	}
}

// Thresholds returns the manifest's thresholds (checked by New).
func (e *Ensemble) Thresholds() labels.Thresholds { return e.th }

// Close releases the sessions. The ensemble is unusable afterwards.
func (e *Ensemble) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var first error
	for _, s := range e.sessions {
		if err := s.Destroy(); err != nil && first == nil {
			first = err
		}
	}
	e.sessions = nil
	e.input, e.output, e.sample = nil, nil, nil
	return first
}

// Predict returns, for every sample, the probability of each class: the sigmoid of each member's
// logits averaged over the manifest's TTA views and over the members. A sample that cannot be
// preprocessed gives a *SampleError (and no result for the batch). It implements model.Predictor.
func (e *Ensemble) Predict(ctx context.Context, batch []pipeline.Image4) ([][]float64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sessions == nil {
		return nil, ErrClosed
	}
	out := make([][]float64, len(batch))
	for start := 0; start < len(batch); start += e.maxBatch {
		end := min(start+e.maxBatch, len(batch))
		if err := e.runChunk(batch[start:end], out[start:end], start); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (e *Ensemble) runChunk(chunk []pipeline.Image4, out [][]float64, offset int) error {
	m := e.manifest
	c, sz, classes := len(e.order), m.InputSize, m.Arch.NumClasses
	per := c * sz * sz
	rows := len(chunk) * e.views
	if len(e.input) < rows*per {
		e.input = make([]float32, rows*per)
		e.output = make([]float32, rows*classes)
	}
	for i, img := range chunk {
		if err := pipeline.ToCHW(img, sz, e.order, e.norm, e.sample); err != nil {
			return &SampleError{offset + i, img.ID, err}
		}
		dst := e.input[i*e.views*per : (i+1)*e.views*per]
		if err := pipeline.WriteViews(dst, e.sample, c, sz, e.views); err != nil {
			return &SampleError{offset + i, img.ID, err}
		}
	}
	in, err := onnx.NewTensor(onnx.NewShape(int64(rows), int64(c), int64(sz), int64(sz)), e.input)
	if err != nil {
		return fmt.Errorf("ort: input tensor: %w", err)
	}
	defer in.Destroy()
	res, err := onnx.NewTensor(onnx.NewShape(int64(rows), int64(classes)), e.output)
	if err != nil {
		return fmt.Errorf("ort: output tensor: %w", err)
	}
	defer res.Destroy()
	sums := make([]float64, len(chunk)*classes)
	for j, s := range e.sessions {
		if err := s.Run([]onnx.Value{in}, []onnx.Value{res}); err != nil {
			return fmt.Errorf("ort: member %s: run on %d images: %w", m.Members[j].File, rows, err)
		}
		logits := res.GetData()
		for i := range chunk {
			acc := sums[i*classes : (i+1)*classes]
			for v := 0; v < e.views; v++ {
				row := logits[(i*e.views+v)*classes : (i*e.views+v+1)*classes]
				for k, x := range row {
					acc[k] += model.Sigmoid(float64(x))
				}
			}
		}
	}
	n := float64(len(e.sessions) * e.views)
	for i := range chunk {
		p := make([]float64, classes)
		for k := range p {
			p[k] = sums[i*classes+k] / n
			if math.IsNaN(p[k]) {
				return fmt.Errorf("ort: sample %s: model produced NaN for class %d", chunk[i].ID, k)
			}
		}
		out[i] = p
	}
	return nil
}
