package viewer

import (
	"context"
	"errors"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/objstore"
)

// ObjectStore is what the viewer needs of object storage: list, read, and write its own
// thumbnail cache. Keys are full object keys in one bucket. objstore.Bucket implements it.
type ObjectStore interface {
	// List returns every object below prefix in lexical key order, with its modification time.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Get returns the object's bytes; a missing object gives an error matching ErrNotFound, an
	// object over max bytes (max > 0) one matching ErrTooLarge.
	Get(ctx context.Context, key string, max int64) ([]byte, error)
	// Put stores data (only ever below the thumbnail prefix).
	Put(ctx context.Context, key string, data []byte, contentType string) error
}

// Object is one listed object.
type Object = objstore.ObjectInfo

// Errors of ObjectStore implementations, checked with errors.Is.
var (
	ErrNotFound = objstore.ErrNotFound
	ErrTooLarge = objstore.ErrTooLarge
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

// StaticModel is the ModelLocator of a fixed location.
func StaticModel(location string) ModelLocator {
	return func(context.Context) (string, error) { return location, nil }
}

// PointerModel is the ModelLocator of the inference consumer's model pointer: the object at key
// holds the location as a promotion does (bus.ParsePromotion). While the
// pointer does not exist, fallback is the location ("" = none).
func PointerModel(store ObjectStore, key, fallback string) ModelLocator {
	return func(ctx context.Context) (string, error) {
		b, err := store.Get(ctx, key, 1<<16)
		if errors.Is(err, ErrNotFound) && fallback != "" {
			return fallback, nil
		}
		if err != nil {
			return "", err
		}
		loc := bus.ParsePromotion(b).Location
		if loc == "" {
			return "", errors.New("model pointer " + key + " is empty")
		}
		return loc, nil
	}
}
