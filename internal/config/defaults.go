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
}
