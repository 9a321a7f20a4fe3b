package ort

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/objstore"
)

// ErrNoS3 is returned by a loader without an S3 client for an s3:// location.
var ErrNoS3 = errors.New("ort: an s3:// model location needs an S3 client")

// NewLoader returns the model.Loader of ensembles run with opt. A location is a manifest path, a
// directory holding manifest.json, or s3://bucket/prefix of such a directory, which is first
// streamed into a temporary directory with client (removed when the set is closed). Load checks
// every member against the manifest's digest.
func NewLoader(opt Options, client *s3.Client) model.Loader {
	return func(ctx context.Context, location string) (model.Predictor, io.Closer, error) {
		path, cleanup := location, func() {}
		if objstore.IsURL(location) {
			dir, err := download(ctx, client, location)
			if err != nil {
				return nil, nil, err
			}
			path, cleanup = dir, func() { _ = os.RemoveAll(dir) }
		}
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			path = filepath.Join(path, "manifest.json")
		}
		ens, err := Load(path, opt)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		return ens, closerFunc(func() error { err := ens.Close(); cleanup(); return err }), nil
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// download streams s3://bucket/prefix/* into a new temporary directory.
func download(ctx context.Context, client *s3.Client, location string) (string, error) {
	if client == nil {
		return "", ErrNoS3
	}
	u, err := objstore.ParseURL(location)
	if err != nil {
		return "", fmt.Errorf("model location %q: want s3://bucket/prefix", location)
	}
	dir, err := os.MkdirTemp("", "hpa-model-*")
	if err != nil {
		return "", err
	}
	n, err := objstore.Download(ctx, client, u, dir)
	if err == nil && n == 0 {
		err = errors.New("no objects")
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("model location %s: %w", location, err)
	}
	return dir, nil
}
