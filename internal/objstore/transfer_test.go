package objstore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestParseURL(t *testing.T) {
	for in, want := range map[string]URL{
		"s3://b":          {Bucket: "b"},
		"s3://b/":         {Bucket: "b"},
		"s3://b/x/y":      {Bucket: "b", Prefix: "x/y/"},
		"s3://b/plate 1/": {Bucket: "b", Prefix: "plate 1/"},
	} {
		got, err := ParseURL(in)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v", in, got, err)
		}
	}
	for _, bad := range []string{"b/x", "http://b/x", "s3:///x"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestDownloadUploadRoundTrip(t *testing.T) {
	cfg := testServer(t, "data")
	ctx := context.Background()
	c, err := NewClient(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]string{"set/train.csv": "Id,Target\na,0\n", "set/train/a_red.png": "R", "set/train/a_blue.png": "B", "other/x": "no"}
	for k, v := range objs {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("data"), Key: aws.String(k), Body: bytes.NewReader([]byte(v))}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	u, _ := ParseURL("s3://data/set")
	n, err := Download(ctx, c, u, dir)
	if err != nil || n != 3 {
		t.Fatalf("downloaded %d, %v", n, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "train", "a_red.png")); string(b) != "R" {
		t.Errorf("content %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("object outside the prefix downloaded")
	}
	// Upload a directory, skipping checkpoints/.
	out := t.TempDir()
	os.MkdirAll(filepath.Join(out, "members"), 0o755)
	os.MkdirAll(filepath.Join(out, "checkpoints"), 0o755)
	os.WriteFile(filepath.Join(out, "manifest.json"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(out, "members", "m.onnx"), []byte("onnx"), 0o644)
	os.WriteFile(filepath.Join(out, "checkpoints", "f.ckpt"), []byte("ck"), 0o644)
	dst, _ := ParseURL("s3://data/models/v1/")
	if n, err := Upload(ctx, c, out, dst, "checkpoints"); err != nil || n != 2 {
		t.Fatalf("uploaded %d, %v", n, err)
	}
	back := t.TempDir()
	if n, err := Download(ctx, c, dst, back); err != nil || n != 2 {
		t.Fatalf("downloaded back %d, %v", n, err)
	}
	if b, _ := os.ReadFile(filepath.Join(back, "members", "m.onnx")); string(b) != "onnx" {
		t.Errorf("round trip %q", b)
	}
}

func TestLocalPathRefusesEscapes(t *testing.T) {
	for _, k := range []string{"../x", "a/../../x", "/abs", "a//b"} {
		if _, err := localPath("/tmp/d", k); err == nil {
			t.Errorf("%q accepted", k)
		}
	}
}
