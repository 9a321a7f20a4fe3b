package ort

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

// A model set loads from its manifest, its directory, or an s3:// prefix (streamed to a temporary
// directory that Close removes); all three give the same model.
func TestLoaderLocations(t *testing.T) {
	path, _ := writeSet(t, "seresnext_tiny", 32, 1, 1)
	dir := filepath.Dir(path)
	srv := servers.S3(t, s3local.Options{AccessKey: "ak", SecretKey: "secretsecret", Buckets: []string{"models"}})
	ctx := context.Background()
	client, err := objstore.NewClient(ctx, objstore.Config{Endpoint: srv.Endpoint(), PathStyle: true, AccessKey: "ak", SecretKey: "secretsecret"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := objstore.Upload(ctx, client, dir, objstore.URL{Bucket: "models", Prefix: "sets/v1/"}); err != nil {
		t.Fatal(err)
	}
	load := NewLoader(testOpts, client)
	var digests []string
	for _, loc := range []string{path, dir, "s3://models/sets/v1", "s3://models/sets/v1/"} {
		p, closer, err := load(ctx, loc)
		if err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
		digests = append(digests, p.Info().ManifestDigest)
		if err := closer.Close(); err != nil {
			t.Errorf("%s: close: %v", loc, err)
		}
	}
	for _, d := range digests[1:] {
		if d != digests[0] {
			t.Errorf("digests %v", digests)
		}
	}
	if _, _, err := load(ctx, "s3://models/none/"); err == nil {
		t.Error("an empty prefix loaded")
	}
	if _, _, err := NewLoader(testOpts, nil)(ctx, "s3://models/sets/v1"); !errors.Is(err, ErrNoS3) {
		t.Errorf("no client: %v", err)
	}
}
