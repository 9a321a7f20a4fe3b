package config

import (
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/local"
)

// LoadEndpoints makes the endpoints.json that `hpa up` writes (local.Endpoints) the defaults of
// the S3 and NATS settings: s3.endpoint, s3.region, s3.bucket, s3.access_key, s3.secret_key,
// s3.path_style (the local server wants path-style), nats.url, nats.user, nats.password,
// inference.upload_prefix and inference.labels_prefix. Flags, HPA_* variables and the config file still override them:
// the precedence is flags > env > config file > endpoints file > defaults. Empty fields of the
// file leave a key's default alone.
func LoadEndpoints(v *viper.Viper, path string) error {
	e, err := local.ReadEndpoints(path)
	if err != nil {
		return err
	}
	set := func(key, val string) {
		if val != "" {
			v.SetDefault(key, val)
		}
	}
	set("s3.endpoint", e.S3Endpoint)
	set("s3.region", e.Region)
	set("s3.bucket", e.Bucket)
	set("s3.access_key", e.AccessKey)
	set("s3.secret_key", e.SecretKey)
	set("nats.url", e.NATSURL)
	set("nats.user", e.NATSUser)
	set("nats.password", e.NATSPassword)
	set("inference.upload_prefix", e.UploadPrefix)
	set("inference.labels_prefix", e.LabelsPrefix)
	if e.S3Endpoint != "" {
		v.SetDefault("s3.path_style", true)
	}
	return nil
}
