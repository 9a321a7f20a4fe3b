package labeling

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// Fetcher gets the bytes of one channel object of a sample. A missing, oversized or unreadable
// object is a *pipeline.InputError naming it (poison: retrying does not help); anything else is a
// *TransientError.
type Fetcher interface {
	Fetch(ctx context.Context, s Sample, ch pipeline.Channel) ([]byte, error)
}

// DirFetcher reads channel files (the keys are paths).
type DirFetcher struct{}

// Fetch implements Fetcher.
func (DirFetcher) Fetch(_ context.Context, s Sample, ch pipeline.Channel) ([]byte, error) {
	f := s.Keys[ch]
	data, err := os.ReadFile(f)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &pipeline.InputError{File: f, Kind: pipeline.KindMissingChannel, Reason: "sample " + s.ID + ": " + ch.String() + " channel file does not exist", Err: err}
		}
		return nil, &pipeline.InputError{File: f, Kind: pipeline.KindIO, Reason: "cannot read: " + err.Error(), Err: err}
	}
	return data, nil
}

// ObjectFetcher gets channel objects (the keys are object keys) from a store, retrying a failed
// get a few times in place (not-found and too-large are answered at once).
type ObjectFetcher struct {
	Store objstore.Store
	// MaxBytes refuses larger objects (kind too_large); 0: no limit.
	MaxBytes int64
	// OnRetry, when set, is called for every failed attempt that is retried (a metric).
	OnRetry func()
}

// Fetch implements Fetcher.
func (f ObjectFetcher) Fetch(ctx context.Context, s Sample, ch pipeline.Channel) ([]byte, error) {
	key := s.Keys[ch]
	var err error
	d := 20 * time.Millisecond
	for attempt := 0; attempt < 4; attempt++ {
		var data []byte
		if data, err = f.Store.Get(ctx, key, f.MaxBytes); err == nil {
			return data, nil
		}
		switch {
		case errors.Is(err, objstore.ErrNotFound):
			return nil, &pipeline.InputError{File: key, Kind: pipeline.KindMissingChannel, Err: err,
				Reason: fmt.Sprintf("sample %s: %s channel object %s does not exist", s.ID, ch, key)}
		case errors.Is(err, objstore.ErrTooLarge):
			return nil, &pipeline.InputError{File: key, Kind: pipeline.KindTooLarge, Err: err,
				Reason: fmt.Sprintf("sample %s: %s channel object %s is larger than %d bytes", s.ID, ch, key, f.MaxBytes)}
		}
		if f.OnRetry != nil {
			f.OnRetry()
		}
		time.Sleep(d)
		d *= 2
	}
	return nil, &TransientError{"get " + key, err}
}
