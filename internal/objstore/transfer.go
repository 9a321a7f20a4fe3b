package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// DefaultBufferSize is the copy buffer of Download: the most of an object held in memory at once.
const DefaultBufferSize = 1 << 20

// TransferOption tunes Download and Upload.
type TransferOption func(*transferOptions)

type transferOptions struct {
	bufferSize int
}

// WithBufferSize sets the copy buffer of Download (default DefaultBufferSize; at least 4 KiB):
// objects of any size stream to disk through it, so memory does not grow with object size.
func WithBufferSize(n int) TransferOption {
	return func(o *transferOptions) { o.bufferSize = max(n, 4<<10) }
}

func transferOpts(opts []TransferOption) transferOptions {
	o := transferOptions{bufferSize: DefaultBufferSize}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Download copies every object under u into dir (keys relative to the prefix become paths),
// streaming each through one copy buffer into a temporary file renamed into place. Keys that
// would escape dir are refused; a file already there with the object's size is kept (a resumed
// transfer). It returns the number of objects in dir afterwards.
func Download(ctx context.Context, c *s3.Client, u URL, dir string, opts ...TransferOption) (int, error) {
	o := transferOpts(opts)
	buf := make([]byte, o.bufferSize)
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(u.Bucket), Prefix: aws.String(u.Prefix)})
	n := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, &Error{Op: "list", Bucket: u.Bucket, Key: u.Prefix, Err: err}
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			rel := strings.TrimPrefix(key, u.Prefix)
			if rel == "" || strings.HasSuffix(rel, "/") {
				continue
			}
			local, err := localPath(dir, rel)
			if err != nil {
				return n, fmt.Errorf("s3://%s/%s: %w", u.Bucket, key, err)
			}
			if st, err := os.Stat(local); err == nil && obj.Size != nil && st.Size() == *obj.Size {
				n++ // already there (a resumed run)
				continue
			}
			if err := getFile(ctx, c, u.Bucket, key, local, buf); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

func localPath(dir, rel string) (string, error) {
	clean := path.Clean("/" + rel)
	if clean != "/"+rel || strings.Contains(rel, "\x00") {
		return "", errors.New("key is not a clean relative path")
	}
	return filepath.Join(dir, filepath.FromSlash(rel)), nil
}

// getFile streams one object into local through buf.
func getFile(ctx context.Context, c *s3.Client, bucket, key, local string, buf []byte) error {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return &Error{Op: "get", Bucket: bucket, Key: key, NotFound: isNotFound(err), Err: err}
	}
	defer out.Body.Close()
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		return err
	}
	tmp := local + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	// Plain Writer/Reader wrappers: io.CopyBuffer would otherwise hand the copy to
	// (*os.File).ReadFrom and its own buffer.
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, struct{ io.Reader }{out.Body}, buf)
	if err == nil && out.ContentLength != nil && n != *out.ContentLength {
		err = fmt.Errorf("short body: %d of %d bytes", n, *out.ContentLength)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return &Error{Op: "get", Bucket: bucket, Key: key, Err: err}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, local)
}

// Upload copies every file under dir to u (paths relative to dir become keys), streaming each
// from disk, skipping the directories named in skip (relative, e.g. "checkpoints"). It returns the
// number of files uploaded.
func Upload(ctx context.Context, c *s3.Client, dir string, u URL, skip ...string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			for _, s := range skip {
				if rel == s {
					return filepath.SkipDir
				}
			}
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		key := u.Prefix + rel
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(u.Bucket), Key: aws.String(key), Body: f, ContentLength: aws.Int64(st.Size())}); err != nil {
			return &Error{Op: "put", Bucket: u.Bucket, Key: key, Err: err}
		}
		n++
		return nil
	})
	return n, err
}
