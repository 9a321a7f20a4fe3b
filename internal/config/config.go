// Package config wires viper into the CLI: flags > HPA_* environment > config file > defaults.
//
// Every key has a dotted name ("ort.library"); its environment variable is HPA_ plus the key in upper
// case with dots and dashes turned into underscores (HPA_ORT_LIBRARY). Keys that are command flags
// are bound with BindFlags; the flag's default is the lowest layer. Keys without a flag get their
// default in defaults.go. config.yaml at the repository root documents every key.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// EnvPrefix is the prefix of every environment variable the program reads.
const EnvPrefix = "HPA"

// New returns a viper instance with the environment layer and the defaults installed.
func New() *viper.Viper {
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	v.AutomaticEnv()
	SetDefaults(v)
	return v
}

// Load reads the config file. An explicit path must exist; without one, ./config.yaml is read
// when present and silently skipped otherwise.
func Load(v *viper.Viper, path string) error {
	explicit := path != ""
	if !explicit {
		path = "config.yaml"
	}
	if _, err := os.Stat(path); err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("config file %s: %w", path, err)
	}
	v.SetConfigFile(path)
	if err := v.ReadInConfig(); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// BindFlags binds each flag of the command's own flag set to a key: prefix + "." + flag name with
// dashes turned into underscores ("ort" + "intra-threads" -> "ort.intra_threads"), unless the flag
// is listed in keys with an explicit key. An empty prefix binds flags at top level.
func BindFlags(v *viper.Viper, cmd *cobra.Command, prefix string, keys map[string]string) {
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		key, ok := keys[f.Name]
		if !ok {
			key = strings.ReplaceAll(f.Name, "-", "_")
			if prefix != "" {
				key = prefix + "." + key
			}
		}
		_ = v.BindPFlag(key, f)
	})
}
