package inference

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
)

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
	pred     model.Predictor
	closer   io.Closer
	info     labels.ModelInfo
	th       labels.Thresholds
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

func validateModel(location string, p model.Predictor) (labels.ModelInfo, labels.Thresholds, error) {
	info, th := p.Info(), p.Thresholds()
	if info.ManifestDigest == "" {
		return info, th, &ModelError{Location: location, Reason: "model has no manifest digest"}
	}
	if err := th.Validate(labels.NumClasses); err != nil {
		return info, th, &ModelError{Location: location, Reason: "bad thresholds", Err: err}
	}
	return info, th, nil
}

// load loads location beside the serving set and, when it works, swaps it in. The old set is
// closed in the background once its in-flight batches are done. A failed load leaves the
// serving set untouched and returns the error.
func (h *modelHolder) load(ctx context.Context, loader model.Loader, location string) (labels.ModelInfo, *loadedModel, error) {
	if loader == nil {
		return labels.ModelInfo{}, nil, &ModelError{Location: location, Reason: "no model loader configured"}
	}
	pred, closer, err := loader(ctx, location)
	if err != nil {
		return labels.ModelInfo{}, nil, &ModelError{Location: location, Reason: "load failed", Err: err}
	}
	info, th, err := validateModel(location, pred)
	if err != nil {
		if closer != nil {
			_ = closer.Close()
		}
		return labels.ModelInfo{}, nil, err
	}
	nm := &loadedModel{pred: pred, closer: closer, info: info, th: th, location: location, closed: make(chan struct{})}
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
func (h *modelHolder) info() (labels.ModelInfo, string, bool) {
	m := h.cur.Load()
	if m == nil {
		return labels.ModelInfo{}, "", false
	}
	return m.info, m.location, true
}
