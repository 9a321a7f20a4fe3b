package local

import (
	"encoding/json"
	"fmt"
	"os"
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
	MetricsURL   string `json:"metrics_url"`
	// ViewerURL is the plate viewer (basic auth: access key / secret key); "" when off.
	ViewerURL string `json:"viewer_url,omitempty"`
}

// Write stores e at path, readable by the owner only (it holds credentials).
func (e Endpoints) Write(path string) error {
	b, _ := json.MarshalIndent(e, "", "  ")
	return os.WriteFile(path, append(b, '\n'), 0o600)
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
