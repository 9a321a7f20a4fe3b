package config

import (
	"fmt"
	"time"

	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/viewer"
)

// Web reads the plate viewer's settings: the web.* keys (unset keys keep the viewer's defaults),
// the inference.* prefixes it shows, the credentials people sign in with (the static s3.* keys and
// web.token) and decode.*.
func Web(v *viper.Viper) (viewer.Config, error) {
	c := viewer.DefaultConfig()
	str := func(key string, dst *string) {
		if s := v.GetString(key); s != "" {
			*dst = s
		}
	}
	str("inference.upload_prefix", &c.UploadPrefix)
	str("inference.labels_prefix", &c.LabelsPrefix)
	str("web.thumbs_prefix", &c.ThumbsPrefix)
	str("web.models_prefix", &c.ModelsPrefix)
	str("web.runs_prefix", &c.RunsPrefix)
	num := func(key string, dst *int) {
		if v.IsSet(key) {
			*dst = v.GetInt(key)
		}
	}
	num("web.thumb_size", &c.ThumbSize)
	num("web.view_size", &c.ViewSize)
	num("web.thumb_workers", &c.ThumbWorkers)
	num("web.page_size", &c.PageSize)
	num("web.max_streams", &c.MaxStreams)
	dur := func(key string, dst *time.Duration) {
		if v.IsSet(key) {
			*dst = v.GetDuration(key)
		}
	}
	dur("web.request_timeout", &c.RequestTimeout)
	dur("web.index_ttl", &c.IndexTTL)
	if v.IsSet("web.max_object_bytes") {
		c.MaxObjectBytes = v.GetInt64("web.max_object_bytes")
	}
	c.Bucket = v.GetString("s3.bucket")
	c.AccessKey, c.SecretKey = v.GetString("s3.access_key"), v.GetString("s3.secret_key")
	c.Token = v.GetString("web.token")
	dec, err := Decode(v)
	if err != nil {
		return c, fmt.Errorf("web: %w", err)
	}
	c.Decode = dec
	return c, nil
}

// WebEnabled reads web.enabled (default on): whether `hpa up` and `hpa inference` serve the viewer.
func WebEnabled(v *viper.Viper) bool { return !v.IsSet("web.enabled") || v.GetBool("web.enabled") }
