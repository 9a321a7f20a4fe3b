package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Store is object storage over one bucket: what the inference consumer reads channel images from
// and writes labels to. Bucket implements it over any S3 API (AWS, MinIO, internal/local/s3local);
// tests wrap it to inject faults.
type Store interface {
	// Get returns the object's bytes. A missing object gives an *Error with NotFound set
	// (errors.Is ErrNotFound); an object larger than max bytes (max > 0) one with TooLarge set
	// (errors.Is ErrTooLarge).
	Get(ctx context.Context, key string, max int64) ([]byte, error)
	// Put stores data; it returns once the store has it durably.
	Put(ctx context.Context, key string, data []byte, contentType string) error
	// Delete removes an object; a missing one is not an error.
	Delete(ctx context.Context, key string) error
	// List returns the objects below prefix, in lexical key order.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
}

// ObjectInfo is one listed object.
type ObjectInfo struct {
	Key      string
	ETag     string // without quotes; changes when the content does
	Size     int64
	Modified time.Time // last modification (zero when the listing has none)
}

// Sentinels an *Error matches with errors.Is.
var (
	ErrNotFound = errors.New("object not found")
	ErrTooLarge = errors.New("object too large")
)

// Error is an object-storage failure naming the operation, bucket and key.
type Error struct {
	Op       string // get, put, delete, list
	Bucket   string
	Key      string
	NotFound bool // the object does not exist (poison for a sample input)
	TooLarge bool // the object is over the size limit (poison)
	Err      error
}

func (e *Error) Error() string {
	what := "error"
	switch {
	case e.NotFound:
		what = "not found"
	case e.TooLarge:
		what = "too large"
	}
	s := fmt.Sprintf("s3 %s s3://%s/%s: %s", e.Op, e.Bucket, e.Key, what)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is ErrNotFound or ErrTooLarge and e says so.
func (e *Error) Is(target error) bool {
	return (target == ErrNotFound && e.NotFound) || (target == ErrTooLarge && e.TooLarge)
}

// Bucket is a Store over one bucket of an S3 API.
type Bucket struct {
	Client *s3.Client
	Name   string
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound", "404":
			return true
		}
	}
	return false
}

// Get implements Store.
func (s *Bucket) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Name), Key: aws.String(key)})
	if err != nil {
		return nil, &Error{Op: "get", Bucket: s.Name, Key: key, NotFound: isNotFound(err), Err: err}
	}
	defer out.Body.Close()
	if max > 0 && out.ContentLength != nil && *out.ContentLength > max {
		return nil, &Error{Op: "get", Bucket: s.Name, Key: key, TooLarge: true,
			Err: fmt.Errorf("%d bytes, limit %d", *out.ContentLength, max)}
	}
	r := io.Reader(out.Body)
	if max > 0 {
		r = io.LimitReader(out.Body, max+1)
	}
	var buf bytes.Buffer
	if out.ContentLength != nil && *out.ContentLength > 0 {
		buf.Grow(int(*out.ContentLength))
	}
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, &Error{Op: "get", Bucket: s.Name, Key: key, Err: err}
	}
	if max > 0 && int64(buf.Len()) > max {
		return nil, &Error{Op: "get", Bucket: s.Name, Key: key, TooLarge: true, Err: fmt.Errorf("more than %d bytes", max)}
	}
	if out.ContentLength != nil && int64(buf.Len()) != *out.ContentLength {
		return nil, &Error{Op: "get", Bucket: s.Name, Key: key,
			Err: fmt.Errorf("short body: %d of %d bytes", buf.Len(), *out.ContentLength)}
	}
	return buf.Bytes(), nil
}

// Put implements Store.
func (s *Bucket) Put(ctx context.Context, key string, data []byte, contentType string) error {
	return s.PutReader(ctx, key, bytes.NewReader(data), int64(len(data)), contentType)
}

// PutReader stores size bytes read from r (streaming: r is not buffered whole).
func (s *Bucket) PutReader(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	_, err := s.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.Name), Key: aws.String(key), Body: r,
		ContentLength: aws.Int64(size), ContentType: aws.String(contentType),
	})
	if err != nil {
		return &Error{Op: "put", Bucket: s.Name, Key: key, Err: err}
	}
	return nil
}

// Open streams an object: the caller reads and closes the body. A missing object gives an
// *Error matching ErrNotFound.
func (s *Bucket) Open(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Name), Key: aws.String(key)})
	if err != nil {
		return nil, ObjectInfo{}, &Error{Op: "get", Bucket: s.Name, Key: key, NotFound: isNotFound(err), Err: err}
	}
	oi := ObjectInfo{Key: key, ETag: strings.Trim(aws.ToString(out.ETag), `"`), Size: aws.ToInt64(out.ContentLength)}
	return out.Body, oi, nil
}

// Delete implements Store.
func (s *Bucket) Delete(ctx context.Context, key string) error {
	_, err := s.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.Name), Key: aws.String(key)})
	if err != nil && !isNotFound(err) {
		return &Error{Op: "delete", Bucket: s.Name, Key: key, Err: err}
	}
	return nil
}

// List implements Store: every object below prefix, collected (Objects streams them).
func (s *Bucket) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var keys []ObjectInfo
	for oi, err := range s.Objects(ctx, prefix) {
		if err != nil {
			return nil, err
		}
		keys = append(keys, oi)
	}
	return keys, nil
}

// Objects lists the objects below prefix in lexical key order, a page at a time, so memory does
// not grow with the listing. A failed page ends the sequence with its error.
func (s *Bucket) Objects(ctx context.Context, prefix string) iter.Seq2[ObjectInfo, error] {
	return s.ObjectsAfter(ctx, prefix, "")
}

// ObjectsAfter is Objects starting after the key startAfter ("" = from the start): a listing
// resumed where an earlier one stopped.
func (s *Bucket) ObjectsAfter(ctx context.Context, prefix, startAfter string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		in := &s3.ListObjectsV2Input{Bucket: aws.String(s.Name), Prefix: aws.String(prefix)}
		if startAfter != "" {
			in.StartAfter = aws.String(startAfter)
		}
		p := s3.NewListObjectsV2Paginator(s.Client, in)
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				yield(ObjectInfo{}, &Error{Op: "list", Bucket: s.Name, Key: prefix, Err: err})
				return
			}
			for _, o := range page.Contents {
				if o.Key == nil {
					continue
				}
				oi := ObjectInfo{Key: *o.Key, ETag: strings.Trim(aws.ToString(o.ETag), `"`), Size: aws.ToInt64(o.Size),
					Modified: aws.ToTime(o.LastModified)}
				if !yield(oi, nil) {
					return
				}
			}
		}
	}
}

// WithTimeout bounds every call of s by d (List by 4d): a hung request fails, so its caller can
// retry instead of waiting forever. d <= 0 returns s unchanged.
func WithTimeout(s Store, d time.Duration) Store {
	if d <= 0 {
		return s
	}
	return timeoutStore{s, d}
}

type timeoutStore struct {
	inner Store
	d     time.Duration
}

func (t timeoutStore) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.inner.Get(ctx, key, max)
}

func (t timeoutStore) Put(ctx context.Context, key string, data []byte, contentType string) error {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.inner.Put(ctx, key, data, contentType)
}

func (t timeoutStore) Delete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.inner.Delete(ctx, key)
}

func (t timeoutStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d*4)
	defer cancel()
	return t.inner.List(ctx, prefix)
}
