package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"

	"github.com/hpa-plates/hpa/internal/local"
)

// flags > env > config file > endpoints file > defaults, key by key.
func TestEndpointsPrecedence(t *testing.T) {
	dir := t.TempDir()
	ep := filepath.Join(dir, "endpoints.json")
	if err := (local.Endpoints{S3Endpoint: "http://127.0.0.1:9100", Region: "eu-local-1", Bucket: "from-endpoints",
		AccessKey: "AKEP", SecretKey: "sk-endpoints", UploadPrefix: "up/", LabelsPrefix: "lab/",
		NATSURL: "nats://127.0.0.1:4333", NATSUser: "hpa-ep", NATSPassword: "pw-endpoints"}).Write(ep); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(ep); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("endpoints file mode: %v %v", st.Mode(), err)
	}
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("s3:\n  region: file-region\n  bucket: from-file\ninference:\n  labels_prefix: file-labels/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HPA_S3_BUCKET", "from-env")
	t.Setenv("HPA_NATS_URL", "nats://env:4222")
	t.Setenv("HPA_NATS_PASSWORD", "pw-env")
	v := New()
	cmd := &cobra.Command{Use: "x", Run: func(*cobra.Command, []string) {}}
	cmd.Flags().String("bucket", "plates", "")
	cmd.Flags().String("s3-endpoint", "", "")
	cmd.Flags().String("upload-prefix", "incoming/", "")
	cmd.Flags().Bool("s3-path-style", false, "")
	cmd.Flags().String("nats-url", "nats://127.0.0.1:4222", "")
	BindFlags(v, cmd, "x", map[string]string{"bucket": "s3.bucket", "s3-endpoint": "s3.endpoint", "upload-prefix": "inference.upload_prefix",
		"s3-path-style": "s3.path_style", "nats-url": "nats.url"})
	if err := cmd.Flags().Parse([]string{"--bucket", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	if err := Load(v, file); err != nil {
		t.Fatal(err)
	}
	if err := LoadEndpoints(v, ep); err != nil {
		t.Fatal(err)
	}
	s3 := S3(v)
	for _, c := range []struct{ key, got, want, why string }{
		{"s3.bucket", s3.Bucket, "from-flag", "flag beats env, file and endpoints"},
		{"nats.url", NATS(v).URL, "nats://env:4222", "env beats endpoints and the flag default"},
		{"s3.region", s3.Region, "file-region", "file beats endpoints and the default"},
		{"inference.labels_prefix", v.GetString("inference.labels_prefix"), "file-labels/", "file beats endpoints"},
		{"s3.endpoint", s3.Endpoint, "http://127.0.0.1:9100", "endpoints beat the flag default"},
		{"inference.upload_prefix", v.GetString("inference.upload_prefix"), "up/", "endpoints beat the flag default"},
		{"s3.access_key", s3.AccessKey, "AKEP", "endpoints beat the default"},
		{"nats.user", NATS(v).User, "hpa-ep", "endpoints beat the default"},
		{"nats.password", NATS(v).Password, "pw-env", "env (HPA_NATS_PASSWORD) beats endpoints"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q (%s)", c.key, c.got, c.want, c.why)
		}
	}
	if !s3.PathStyle {
		t.Error("the local S3 server of an endpoints file needs path-style addressing")
	}
	// Without the endpoints file the defaults stay.
	v2 := New()
	if S3(v2).Region != "us-east-1" || S3(v2).Endpoint != "" {
		t.Errorf("defaults: %+v", S3(v2))
	}
	if err := LoadEndpoints(New(), filepath.Join(dir, "missing.json")); err == nil {
		t.Error("a missing endpoints file must be an error")
	}
}
