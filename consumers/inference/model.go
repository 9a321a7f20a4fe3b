package inference

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// ModelInfo identifies a loaded model set and says how its probabilities become labels. The
// embedded labels.ModelInfo is what label and error JSON record.
type ModelInfo struct {
	labels.ModelInfo
	Thresholds labels.Thresholds
}

// Predictor runs a model set on a batch of decoded samples and returns, per sample, one probability
// per class (labels.NumClasses values, averaged over members and test-time views). It is called
// by one goroutine at a time. This package never imports an ONNX runtime: the command wires the
// real ensemble in through a ModelLoader.
type Predictor interface {
	Predict(ctx context.Context, batch []pipeline.Image4) ([][]float64, error)
	Model() ModelInfo
}

// ModelLoader loads the model set at location (a manifest path, or whatever the loader
// understands, e.g. an S3 prefix). The closer frees it; it is called once no batch uses it.
type ModelLoader func(ctx context.Context, location string) (Predictor, io.Closer, error)

// ModelError reports a model set that could not be loaded or is unusable.
type ModelError struct {
	Location string
	Reason   string
	Err      error
}

func (e *ModelError) Error() string {
	s := fmt.Sprintf("model %s: %s", e.Location, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ModelError) Unwrap() error { return e.Err }

// loadedModel is one model set plus a reference count of the batches using it, so the set is
// closed only after its last batch finished (a swap never pulls a model out from under a batch).
type loadedModel struct {
	pred     Predictor
	closer   io.Closer
	info     ModelInfo
	location string
	refs     sync.WaitGroup
	retired  atomic.Bool
	closeErr error
	closed   chan struct{}
}

// modelHolder holds the serving model set and swaps it atomically between batches.
type modelHolder struct {
	cur atomic.Pointer[loadedModel]
	mu  sync.Mutex // serializes loads and swaps
}

// acquire returns the current set with a reference taken; release it with release().
func (h *modelHolder) acquire() *loadedModel {
	// The lock keeps a swap from retiring the set between the load and the Add.
	h.mu.Lock()
	m := h.cur.Load()
	if m != nil {
		m.refs.Add(1)
	}
	h.mu.Unlock()
	return m
}

func (m *loadedModel) release() { m.refs.Done() }

func validateModel(location string, p Predictor) (ModelInfo, error) {
	info := p.Model()
	if info.ManifestDigest == "" {
		return info, &ModelError{Location: location, Reason: "model has no manifest digest"}
	}
	if err := info.Thresholds.Validate(labels.NumClasses); err != nil {
		return info, &ModelError{Location: location, Reason: "bad thresholds", Err: err}
	}
	return info, nil
}

// load loads location beside the serving set and, when it works, swaps it in. The old set is
// closed in the background once its in-flight batches are done. A failed load leaves the
// serving set untouched and returns the error.
func (h *modelHolder) load(ctx context.Context, loader ModelLoader, location string) (ModelInfo, *loadedModel, error) {
	if loader == nil {
		return ModelInfo{}, nil, &ModelError{Location: location, Reason: "no model loader configured"}
	}
	pred, closer, err := loader(ctx, location)
	if err != nil {
		return ModelInfo{}, nil, &ModelError{Location: location, Reason: "load failed", Err: err}
	}
	info, err := validateModel(location, pred)
	if err != nil {
		if closer != nil {
			_ = closer.Close()
		}
		return ModelInfo{}, nil, err
	}
	nm := &loadedModel{pred: pred, closer: closer, info: info, location: location, closed: make(chan struct{})}
	h.mu.Lock()
	old := h.cur.Swap(nm)
	h.mu.Unlock()
	if old != nil {
		old.retire()
	}
	return info, old, nil
}

// retire closes the set after its last batch released it.
func (m *loadedModel) retire() {
	if !m.retired.CompareAndSwap(false, true) {
		return
	}
	go func() {
		m.refs.Wait()
		if m.closer != nil {
			m.closeErr = m.closer.Close()
		}
		close(m.closed)
	}()
}

// closeAll retires the serving set and waits for it to be closed.
func (h *modelHolder) closeAll() error {
	h.mu.Lock()
	m := h.cur.Swap(nil)
	h.mu.Unlock()
	if m == nil {
		return nil
	}
	m.retire()
	<-m.closed
	return m.closeErr
}

// info returns the serving set's info and whether one is loaded.
func (h *modelHolder) info() (ModelInfo, string, bool) {
	m := h.cur.Load()
	if m == nil {
		return ModelInfo{}, "", false
	}
	return m.info, m.location, true
}
