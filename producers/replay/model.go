package replay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/objstore"
)

// ModelDigest resolves the manifest digest of the model set at location: a manifest.json path, a
// model directory, or s3://bucket/prefix/ (its manifest.json; or an s3:// key ending in .json).
// get reads an s3:// object (bucket, key); it may be nil when location is local.
func ModelDigest(ctx context.Context, location string, get func(ctx context.Context, bucket, key string) ([]byte, error)) (string, error) {
	var b []byte
	var err error
	if objstore.IsURL(location) {
		rest := strings.TrimPrefix(location, "s3://")
		bucket, key, _ := strings.Cut(rest, "/")
		if !strings.HasSuffix(key, ".json") {
			key = strings.TrimSuffix(key, "/") + "/manifest.json"
			key = strings.TrimPrefix(key, "/")
		}
		if get == nil {
			return "", fmt.Errorf("replay: model %s: no S3 client", location)
		}
		b, err = get(ctx, bucket, key)
	} else {
		path := location
		if st, serr := os.Stat(path); serr == nil && st.IsDir() {
			path = filepath.Join(path, "manifest.json")
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("replay: model manifest of %s: %w", location, err)
	}
	m, err := model.ParseManifest(b, location)
	if err != nil {
		return "", fmt.Errorf("replay: %w", err)
	}
	return m.Digest()
}

// PointerLocation reads a model pointer object's content: the location of the serving set.
func PointerLocation(ctx context.Context, store Store, key string) (string, error) {
	b, err := store.Get(ctx, key, 1<<16)
	if err != nil {
		return "", fmt.Errorf("replay: model pointer %s: %w", key, err)
	}
	loc := bus.ParsePromotion(b).Location
	if loc == "" {
		return "", fmt.Errorf("replay: model pointer %s is empty", key)
	}
	return loc, nil
}
