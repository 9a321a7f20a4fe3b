package viewer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Store is the ObjectStore of one bucket of an S3 API (AWS, MinIO, internal/s3local). Each
// call is bounded by OpTimeout (List by four times it).
type S3Store struct {
	Client    *s3.Client
	Bucket    string
	OpTimeout time.Duration // 0: 30s
}

func (s *S3Store) timeout(ctx context.Context, f time.Duration) (context.Context, context.CancelFunc) {
	d := s.OpTimeout
	if d <= 0 {
		d = 30 * time.Second
	}
	return context.WithTimeout(ctx, d*f)
}

func s3NotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NotFound")
}

// List implements ObjectStore.
func (s *S3Store) List(ctx context.Context, prefix string) ([]Object, error) {
	ctx, cancel := s.timeout(ctx, 4)
	defer cancel()
	var out []Object
	p := s3.NewListObjectsV2Paginator(s.Client, &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3 list s3://%s/%s: %w", s.Bucket, prefix, err)
		}
		for _, o := range page.Contents {
			if o.Key == nil {
				continue
			}
			out = append(out, Object{Key: *o.Key, ETag: strings.Trim(aws.ToString(o.ETag), `"`),
				Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)})
		}
	}
	return out, nil
}

// Get implements ObjectStore.
func (s *S3Store) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	ctx, cancel := s.timeout(ctx, 1)
	defer cancel()
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil {
		if s3NotFound(err) {
			return nil, fmt.Errorf("s3://%s/%s: %w", s.Bucket, key, ErrNotFound)
		}
		return nil, fmt.Errorf("s3 get s3://%s/%s: %w", s.Bucket, key, err)
	}
	defer out.Body.Close()
	if max > 0 && aws.ToInt64(out.ContentLength) > max {
		return nil, fmt.Errorf("s3://%s/%s is %d bytes, limit %d: %w", s.Bucket, key, aws.ToInt64(out.ContentLength), max, ErrTooLarge)
	}
	r := io.Reader(out.Body)
	if max > 0 {
		r = io.LimitReader(out.Body, max+1)
	}
	var buf bytes.Buffer
	if n := aws.ToInt64(out.ContentLength); n > 0 {
		buf.Grow(int(n))
	}
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("s3 get s3://%s/%s: %w", s.Bucket, key, err)
	}
	if max > 0 && int64(buf.Len()) > max {
		return nil, fmt.Errorf("s3://%s/%s is over %d bytes: %w", s.Bucket, key, max, ErrTooLarge)
	}
	return buf.Bytes(), nil
}

// Put implements ObjectStore.
func (s *S3Store) Put(ctx context.Context, key string, data []byte, contentType string) error {
	ctx, cancel := s.timeout(ctx, 1)
	defer cancel()
	_, err := s.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))), ContentType: aws.String(contentType)})
	if err != nil {
		return fmt.Errorf("s3 put s3://%s/%s: %w", s.Bucket, key, err)
	}
	return nil
}
