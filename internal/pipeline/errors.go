package pipeline

import (
	"errors"
	"fmt"
)

// ErrKind classifies why an input file or sample was refused.
type ErrKind string

// The kinds of InputError.
const (
	KindEmpty          ErrKind = "empty"           // zero-byte file
	KindCorrupt        ErrKind = "corrupt"         // bad signature, checksum, compressed stream or header field
	KindTruncated      ErrKind = "truncated"       // the data ends before the image does
	KindUnsupported    ErrKind = "unsupported"     // not PNG/TIFF/JPEG, or a variant this decoder does not handle
	KindTooLarge       ErrKind = "too_large"       // header dimensions above DecodeOptions.MaxPixels
	KindSizeMismatch   ErrKind = "size_mismatch"   // the channels of one sample differ in size
	KindMissingChannel ErrKind = "missing_channel" // a sample lacks one of its four channel files
	KindDuplicate      ErrKind = "duplicate"       // two files claim the same sample channel (ScanDir)
	KindIO             ErrKind = "io"              // the file could not be read
)

// InputError is the error every decode and sample-assembly function returns for bad input.
// File names the file (or, for a sample-level problem, the sample id), Kind says what class
// of problem it is and Reason gives the detail. Use errors.As to get at it.
type InputError struct {
	File   string
	Kind   ErrKind
	Reason string
	Err    error // underlying error, if any (for errors.Is / errors.As on e.g. fs.ErrNotExist)
}

func (e *InputError) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.File, e.Kind, e.Reason)
}

// Unwrap returns the underlying error, if any.
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(file string, kind ErrKind, format string, args ...any) *InputError {
	return &InputError{File: file, Kind: kind, Reason: fmt.Sprintf(format, args...)}
}

// KindOf returns the ErrKind of err if it is (or wraps) an *InputError, and "" otherwise.
func KindOf(err error) ErrKind {
	var ie *InputError
	if errors.As(err, &ie) {
		return ie.Kind
	}
	return ""
}
