package viewer

import (
	"context"
	"errors"
	"time"
)

// ObjectStore is what the viewer needs of object storage: list, read, and write its own
// thumbnail cache. Keys are full object keys in one bucket.
type ObjectStore interface {
	// List returns every object below prefix in lexical key order.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Get returns the object's bytes; a missing object gives an error matching ErrNotFound, an
	// object over max bytes (max > 0) one matching ErrTooLarge.
	Get(ctx context.Context, key string, max int64) ([]byte, error)
	// Put stores data (only ever below the thumbnail prefix).
	Put(ctx context.Context, key string, data []byte, contentType string) error
}

// Object is one listed object.
type Object struct {
	Key      string
	ETag     string // without quotes
	Size     int64
	Modified time.Time
}

// Errors of ObjectStore implementations, checked with errors.Is.
var (
	ErrNotFound = errors.New("object not found")
	ErrTooLarge = errors.New("object too large")
)

// LabelEvent says a sample's result changed: a label was written (Kind "label") or the sample
// failed (Kind "error", with ErrorKind).
type LabelEvent struct {
	Kind      string `json:"kind"`
	Plate     string `json:"plate"`
	SampleID  string `json:"sample_id"`
	ErrorKind string `json:"error_kind,omitempty"`
}

// EventSource delivers label events. Subscribe calls fn for every event until the returned
// stop function is called; fn must not block.
type EventSource interface {
	Subscribe(fn func(LabelEvent)) (stop func(), err error)
}

// ModelLocator says where the model set being served lives: a manifest path, a directory holding
// manifest.json, or s3://bucket/prefix of one. Static locations and the inference consumer's
// model pointer object both fit.
type ModelLocator func(ctx context.Context) (string, error)
