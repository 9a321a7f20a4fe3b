package inference

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// ObjectStore is the object storage the consumer reads channel images from and writes labels to.
// S3Store implements it over any S3 API (AWS, MinIO, internal/s3local).
type ObjectStore interface {
	// Get returns the object's bytes. A missing object gives an *ObjectError with NotFound set;
	// an object larger than max bytes (max > 0) one with TooLarge set.
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
	Key  string
	ETag string // without quotes; changes when the content does
	Size int64
}

// ObjectError is an object-storage failure naming the bucket and key.
type ObjectError struct {
	Op       string // get, put, delete, list
	Bucket   string
	Key      string
	NotFound bool // the object does not exist (poison for a sample input)
	TooLarge bool // the object is over the size limit (poison)
	Err      error
}

func (e *ObjectError) Error() string {
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

func (e *ObjectError) Unwrap() error { return e.Err }

// S3Store is an ObjectStore over one bucket of an S3 API.
type S3Store struct {
	Client *s3.Client
	Bucket string
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

// Get implements ObjectStore.
func (s *S3Store) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, &ObjectError{Op: "get", Bucket: s.Bucket, Key: key, NotFound: isNotFound(err), Err: err}
	}
	defer out.Body.Close()
	if max > 0 && out.ContentLength != nil && *out.ContentLength > max {
		return nil, &ObjectError{Op: "get", Bucket: s.Bucket, Key: key, TooLarge: true,
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
		return nil, &ObjectError{Op: "get", Bucket: s.Bucket, Key: key, Err: err}
	}
	if max > 0 && int64(buf.Len()) > max {
		return nil, &ObjectError{Op: "get", Bucket: s.Bucket, Key: key, TooLarge: true, Err: fmt.Errorf("more than %d bytes", max)}
	}
	if out.ContentLength != nil && int64(buf.Len()) != *out.ContentLength {
		return nil, &ObjectError{Op: "get", Bucket: s.Bucket, Key: key,
			Err: fmt.Errorf("short body: %d of %d bytes", buf.Len(), *out.ContentLength)}
	}
	return buf.Bytes(), nil
}

// Put implements ObjectStore.
func (s *S3Store) Put(ctx context.Context, key string, data []byte, contentType string) error {
	_, err := s.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.Bucket), Key: aws.String(key), Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), ContentType: aws.String(contentType),
	})
	if err != nil {
		return &ObjectError{Op: "put", Bucket: s.Bucket, Key: key, Err: err}
	}
	return nil
}

// Delete implements ObjectStore.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	_, err := s.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil && !isNotFound(err) {
		return &ObjectError{Op: "delete", Bucket: s.Bucket, Key: key, Err: err}
	}
	return nil
}

// List implements ObjectStore.
func (s *S3Store) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var keys []ObjectInfo
	p := s3.NewListObjectsV2Paginator(s.Client, &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, &ObjectError{Op: "list", Bucket: s.Bucket, Key: prefix, Err: err}
		}
		for _, o := range page.Contents {
			if o.Key != nil {
				oi := ObjectInfo{Key: *o.Key, ETag: strings.Trim(aws.ToString(o.ETag), `"`)}
				if o.Size != nil {
					oi.Size = *o.Size
				}
				keys = append(keys, oi)
			}
		}
	}
	return keys, nil
}

// S3Options configure NewS3Client.
type S3Options struct {
	Endpoint  string // empty: AWS
	Region    string
	PathStyle bool
	// HTTPClient overrides the transport (tests use it for fault injection).
	HTTPClient *http.Client
}

// NewS3Client builds an S3 client from an aws.Config (credentials from the standard chain or
// static ones) and the options.
func NewS3Client(cfg aws.Config, o S3Options) *s3.Client {
	return s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(strings.TrimRight(o.Endpoint, "/"))
		}
		if o.Region != "" {
			so.Region = o.Region
		}
		so.UsePathStyle = o.PathStyle
		// Objects are hashed (sha256 in the label's sources) by the consumer itself; validating
		// response checksums only where required also keeps the SDK from logging about objects
		// stored without one.
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		if o.HTTPClient != nil {
			so.HTTPClient = o.HTTPClient
		}
	})
}

// timeoutStore bounds each call of an ObjectStore.
type timeoutStore struct {
	inner ObjectStore
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
