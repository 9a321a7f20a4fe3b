package labeling

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// Assembled is a decoded sample and the description of its four channel objects.
type Assembled struct {
	Image   pipeline.Image4
	Sources []labels.Source
}

// Assemble fetches and decodes the four channels of s and checks they have one size. Poison
// input is a *pipeline.InputError naming the object at fault (kinds of pipeline.DecodeChannel,
// missing_channel, too_large, size_mismatch); other failures are a *TransientError.
func Assemble(ctx context.Context, f Fetcher, s Sample, dec pipeline.DecodeOptions) (Assembled, error) {
	a := Assembled{Image: pipeline.Image4{ID: s.ID}, Sources: make([]labels.Source, 4)}
	for c := range pipeline.Channel(4) {
		key := s.Keys[c]
		data, err := f.Fetch(ctx, s, c)
		if err != nil {
			return Assembled{}, err
		}
		p, err := pipeline.DecodeChannel(data, key, c, dec)
		if err != nil {
			if pipeline.KindOf(err) == "" {
				return Assembled{}, &TransientError{"decode " + key, err}
			}
			return Assembled{}, err
		}
		if c == pipeline.Red {
			a.Image.W, a.Image.H = p.W, p.H
		} else if p.W != a.Image.W || p.H != a.Image.H {
			return Assembled{}, &pipeline.InputError{File: key, Kind: pipeline.KindSizeMismatch,
				Reason: fmt.Sprintf("sample %s: %s channel is %dx%d but %s is %dx%d", s.ID, c, p.W, p.H, pipeline.Red, a.Image.W, a.Image.H)}
		}
		a.Image.Planes[c] = p
		a.Sources[c] = labels.SourceOf(c, baseName(key), data)
	}
	return a, nil
}

// baseName is the last element of a path or object key.
func baseName(key string) string {
	if i := strings.LastIndexAny(key, `/\`); i >= 0 {
		return key[i+1:]
	}
	return key
}

// Predict runs the model on a batch. When the batch fails, each sample is run alone, so one bad
// sample does not take the others down: errs[i] is the failure of sample i (probs[i] is nil
// then), batchErr the failure of the whole batch (nil when it ran).
func Predict(ctx context.Context, p model.Predictor, imgs []pipeline.Image4) (probs [][]float64, errs []error, batchErr error) {
	errs = make([]error, len(imgs))
	probs, batchErr = predict(ctx, p, imgs)
	if batchErr == nil {
		return probs, errs, nil
	}
	probs = make([][]float64, len(imgs))
	for i := range imgs {
		if len(imgs) == 1 {
			errs[i] = batchErr
			break
		}
		one, err := predict(ctx, p, imgs[i:i+1])
		if err != nil {
			errs[i] = err
			continue
		}
		probs[i] = one[0]
	}
	return probs, errs, batchErr
}

func predict(ctx context.Context, p model.Predictor, imgs []pipeline.Image4) ([][]float64, error) {
	probs, err := p.Predict(ctx, imgs)
	if err == nil && len(probs) != len(imgs) {
		err = fmt.Errorf("model returned %d results for %d samples", len(probs), len(imgs))
	}
	return probs, err
}

// Label builds the label of a sample from its probabilities and encodes it (deterministic bytes).
// An error is a *labels.DocumentError (e.g. a probability outside [0, 1]).
func Label(id string, sources []labels.Source, info labels.ModelInfo, th labels.Thresholds, probs []float64) (labels.Label, []byte, error) {
	l, err := labels.NewLabel(id, sources, info, th, probs)
	if err != nil {
		return l, nil, err
	}
	b, err := labels.MarshalLabel(l)
	return l, b, err
}

// KindRetriesExhausted is the error kind of a sample whose transient failures outlasted its
// deliveries.
const KindRetriesExhausted = "retries_exhausted"

// Failure builds the error record of a sample that could not be labeled (labels.NewErrorRecord).
// With objects set the sample came from an object store: the record names the object key at
// fault instead of a file. A transient error (retries exhausted) gets kind retries_exhausted.
func Failure(id string, err error, info *labels.ModelInfo, objects bool) labels.ErrorRecord {
	rec := labels.NewErrorRecord(id, err, info)
	var ie *pipeline.InputError
	if objects && errors.As(err, &ie) && ie.File != id {
		rec.Object, rec.File = ie.File, ""
	}
	if IsTransient(err) {
		rec.Kind, rec.Reason = KindRetriesExhausted, err.Error()
	}
	return rec
}

// Failed is the outcome of a sample whose error record was written: poison input, or a transient
// failure on its final delivery. An input dead-letters it.
type Failed struct {
	Record labels.ErrorRecord
	Err    error
}

func (f *Failed) Error() string { return f.Record.Kind + ": " + f.Record.Reason }
func (f *Failed) Unwrap() error { return f.Err }
