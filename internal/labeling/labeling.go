// Package labeling is the sample path of labeling, apart from any transport: an input hands over
// samples (four channel objects) with an AckFunc, the processors turn each into a label record
// (Assemble: fetch and decode the channels; Predict: the model set on a batch; Label: the label
// JSON, or Failure: the error record) and a labels.Sink stores the result. The input alone
// decides what an outcome means for its transport (acknowledge, redeliver, dead-letter);
// processors and sinks never see it.
//
// `hpa label DIR` is DirInput + the processors + labels.DirSink (LabelDir); the inference
// service is its JetStream input + the same processors + labels.ObjectSink (consumers/inference).
// This package imports neither NATS nor a model runtime: the model is a model.Predictor.
package labeling

import (
	"context"
	"errors"
)

// Sample is one sample as an input hands it over: its plate ("" for a directory) and id, and the
// four channel objects (file paths or object keys), red, green, blue, yellow.
type Sample struct {
	Plate string
	ID    string
	Keys  [4]string
}

// Message is one sample from an input.
type Message struct {
	Sample Sample
	// Content identifies the four objects the sample was assembled from ("" when the input
	// cannot say).
	Content string
	// Attempt counts the deliveries of this message, from 1.
	Attempt int
	// Final is set on the last delivery: a transient failure is then recorded like a poison one.
	Final bool
}

// AckFunc reports the outcome of a message to its input, once: nil when the sample is labeled or
// its failure recorded, otherwise the error that kept it from being either (IsTransient tells a
// failure worth retrying; a *Failed carries a recorded failure).
type AckFunc func(ctx context.Context, err error)

// Input hands out samples. Read returns ErrEndOfInput when a finite input is exhausted or a
// draining one has nothing left.
type Input interface {
	Read(ctx context.Context) (Message, AckFunc, error)
}

// ErrEndOfInput ends a Read loop.
var ErrEndOfInput = errors.New("labeling: end of input")

// TransientError is a failure worth retrying (object store or bus trouble, a model failure).
type TransientError struct {
	Op  string
	Err error
}

func (e *TransientError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// IsTransient reports whether err (or an error it wraps) is a *TransientError.
func IsTransient(err error) bool {
	var te *TransientError
	return errors.As(err, &te)
}
