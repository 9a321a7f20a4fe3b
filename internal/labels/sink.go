package labels

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Ref names a sample in a sink: its plate ("" in a directory run) and its id.
type Ref struct {
	Plate string
	ID    string
}

// Sink stores the per-sample records of a labeling run. DirSink (`hpa label`) and ObjectSink (the
// inference service) implement it.
type Sink interface {
	// WriteLabel stores the label document of a sample and removes a stale error record of it.
	WriteLabel(ctx context.Context, ref Ref, doc []byte) error
	// WriteError stores the error record of a sample.
	WriteError(ctx context.Context, ref Ref, doc []byte) error
}

// DirSink writes <Dir>/<id>.json and <Dir>/<id>.error.json, each through a temporary file renamed
// into place. A label removes the sample's stale error document and an error document the stale
// label, so a directory never holds both for a sample.
type DirSink struct {
	Dir string
}

// LabelPath and ErrorPath are where the records of sample id go.
func (s DirSink) LabelPath(id string) string { return filepath.Join(s.Dir, id+".json") }
func (s DirSink) ErrorPath(id string) string { return filepath.Join(s.Dir, id+".error.json") }

// WriteLabel implements Sink.
func (s DirSink) WriteLabel(_ context.Context, ref Ref, doc []byte) error {
	if err := WriteFileAtomic(s.LabelPath(ref.ID), doc); err != nil {
		return err
	}
	return removeStale(s.ErrorPath(ref.ID))
}

// WriteError implements Sink.
func (s DirSink) WriteError(_ context.Context, ref Ref, doc []byte) error {
	if err := WriteFileAtomic(s.ErrorPath(ref.ID), doc); err != nil {
		return err
	}
	return removeStale(s.LabelPath(ref.ID))
}

// WriteSubmissionFile writes the Kaggle CSV of rows (WriteSubmission) to path, creating its
// directory.
func WriteSubmissionFile(path string, rows []SubmissionRow) error {
	var buf bytes.Buffer
	if err := WriteSubmission(&buf, rows); err != nil {
		return fmt.Errorf("label: submission: %w", err)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("label: submission: %w", err)
		}
	}
	return WriteFileAtomic(path, buf.Bytes())
}

// WriteFileAtomic writes b to path through path.tmp renamed into place.
func WriteFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("label: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("label: write %s: %w", path, err)
	}
	return nil
}

func removeStale(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("label: remove stale %s: %w", path, err)
	}
	return nil
}

// Objects is the object storage an ObjectSink writes to; objstore.Store satisfies it.
type Objects interface {
	Get(ctx context.Context, key string, max int64) ([]byte, error)
	Put(ctx context.Context, key string, data []byte, contentType string) error
	Delete(ctx context.Context, key string) error
}

// ObjectSink writes the records of plate p, sample id to <Prefix><p>/<id>.json and
// <Prefix><p>/<id>.error.json, and the plate's Kaggle CSV to <Prefix><p>/submission.csv.
type ObjectSink struct {
	Store  Objects
	Prefix string // ends in "/"
}

// LabelKey, ErrorKey and SubmissionKey are the object keys of a sample's records and a plate's CSV.
func (s ObjectSink) LabelKey(ref Ref) string { return s.Prefix + ref.Plate + "/" + ref.ID + ".json" }
func (s ObjectSink) ErrorKey(ref Ref) string {
	return s.Prefix + ref.Plate + "/" + ref.ID + ".error.json"
}
func (s ObjectSink) SubmissionKey(plate string) string { return s.Prefix + plate + "/submission.csv" }

// PutLabel stores a label document.
func (s ObjectSink) PutLabel(ctx context.Context, ref Ref, doc []byte) error {
	return s.Store.Put(ctx, s.LabelKey(ref), doc, "application/json")
}

// RemoveError deletes the error record of a sample (a missing one is fine).
func (s ObjectSink) RemoveError(ctx context.Context, ref Ref) error {
	return s.Store.Delete(ctx, s.ErrorKey(ref))
}

// ReadLabel returns the stored label document of a sample (at most 8 MiB).
func (s ObjectSink) ReadLabel(ctx context.Context, ref Ref) ([]byte, error) {
	return s.Store.Get(ctx, s.LabelKey(ref), 8<<20)
}

// WriteLabel implements Sink: PutLabel, then RemoveError.
func (s ObjectSink) WriteLabel(ctx context.Context, ref Ref, doc []byte) error {
	if err := s.PutLabel(ctx, ref, doc); err != nil {
		return err
	}
	return s.RemoveError(ctx, ref)
}

// WriteError implements Sink. The sample's label, if any, stays (the service keeps the last good
// label of a sample beside a newer failure).
func (s ObjectSink) WriteError(ctx context.Context, ref Ref, doc []byte) error {
	return s.Store.Put(ctx, s.ErrorKey(ref), doc, "application/json")
}

// WriteSubmission stores the plate's Kaggle CSV.
func (s ObjectSink) WriteSubmission(ctx context.Context, plate string, rows []SubmissionRow) error {
	var buf bytes.Buffer
	if err := WriteSubmission(&buf, rows); err != nil {
		return err
	}
	return s.Store.Put(ctx, s.SubmissionKey(plate), buf.Bytes(), "text/csv")
}
