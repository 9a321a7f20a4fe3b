package local

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Endpoints is what `hpa up` writes to <data-dir>/endpoints.json: everything an S3 client (aws cli,
// boto3, mc) and a NATS client need. Every client command reads it with --endpoints FILE as the
// default of its S3 and NATS settings (internal/config).
type Endpoints struct {
	S3Endpoint   string `json:"s3_endpoint"`
	Region       string `json:"region"`
	Bucket       string `json:"bucket"`
	AccessKey    string `json:"access_key"`
	SecretKey    string `json:"secret_key"`
	UploadPrefix string `json:"upload_prefix"`
	LabelsPrefix string `json:"labels_prefix"`
	NATSURL      string `json:"nats_url"`
	// NATSUser and NATSPassword are required by the NATS server of `hpa up`.
	NATSUser     string `json:"nats_user,omitempty"`
	NATSPassword string `json:"nats_password,omitempty"`
	MetricsURL   string `json:"metrics_url"`
	// ViewerURL is the plate viewer (basic auth: access key / secret key); "" when off.
	ViewerURL string `json:"viewer_url,omitempty"`
}

// Write stores e at path, readable by the owner only (it holds credentials), also when the file
// existed with a wider mode.
func (e Endpoints) Write(path string) error {
	b, _ := json.MarshalIndent(e, "", "  ")
	return writePrivate(path, append(b, '\n'))
}

// writePrivate replaces path with b, mode 0600: the bytes go to a new 0600 file beside it that is
// renamed over path, so the secrets are never readable by others, not even for a moment.
func writePrivate(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing left to remove
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadEndpoints reads an endpoints.json written by `hpa up`.
func ReadEndpoints(path string) (Endpoints, error) {
	var e Endpoints
	b, err := os.ReadFile(path)
	if err != nil {
		return e, fmt.Errorf("endpoints file: %w", err)
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("endpoints file %s: %w", path, err)
	}
	return e, nil
}
