package config

import "github.com/spf13/viper"

// SetDefaults installs the defaults of keys that are not command flags. Keep config.yaml in step.
func SetDefaults(v *viper.Viper) {
	// Where setup.sh puts downloads and the libraries it builds (git-ignored).
	v.SetDefault("cache_dir", ".cache")
	// Logging.
	v.SetDefault("log.level", "info")
	v.SetDefault("log.format", "text")
	// libtorch training backend (internal/model/torch).
	v.SetDefault("torch.library", ".cache/hpatorch/libhpatorch.so")
	v.SetDefault("torch.threads", 0)
	// hpa train: recipe knobs that are not flags (the flags are in cmd/hpa/train.go).
	v.SetDefault("train.augment.brightness", 0.0)
	v.SetDefault("train.augment.contrast", 0.0)
	v.SetDefault("train.augment.expand", 1.0)
	v.SetDefault("train.augment.rot90", true)
	v.SetDefault("train.augment.flip_lr", true)
	v.SetDefault("train.augment.flip_ud", true)
	v.SetDefault("train.augment.erase_prob", 0.0)
	v.SetDefault("train.augment.rotate_deg", 0.0)
	v.SetDefault("train.balance.minor_below", 0.01)
	v.SetDefault("train.balance.major_from", 0.05)
	v.SetDefault("train.balance.shares", []float64{0.5, 0.3, 0.2})
	v.SetDefault("train.balance.max_repeat", 4.0)
	v.SetDefault("train.threshold_shrink_k", 10.0)
	// S3 client for s3:// locations (hpa train --data/--out s3://...); empty credentials = AWS chain.
	v.SetDefault("s3.endpoint", "")
	v.SetDefault("s3.region", "us-east-1")
	v.SetDefault("s3.path_style", false)
	v.SetDefault("s3.access_key", "")
	v.SetDefault("s3.secret_key", "")
	// Replicas of the streams and KV buckets the consumers create (1: one NATS server).
	v.SetDefault("nats.replicas", 1)
}
