package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/viper"
)

func TestDecodeOptionsFromConfig(t *testing.T) {
	v := viper.New()
	o, err := DecodeOptionsFromConfig(v)
	if err != nil || o != (DecodeOptions{}) {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("decode:\n  max_pixels: 1000000\n  yellow_from: g\n"), 0o644)
	v.SetConfigFile(cfg)
	if err := v.ReadInConfig(); err != nil {
		t.Fatal(err)
	}
	o, err = DecodeOptionsFromConfig(v)
	if err != nil || o.MaxPixels != 1000000 || o.YellowFrom != "g" {
		t.Fatalf("file: %+v %v", o, err)
	}
	// Environment beats the file, as config.New sets it up.
	t.Setenv("HPA_DECODE_MAX_PIXELS", "2048")
	v.SetEnvPrefix("HPA")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if o, err = DecodeOptionsFromConfig(v); err != nil || o.MaxPixels != 2048 {
		t.Fatalf("env: %+v %v", o, err)
	}
	t.Setenv("HPA_DECODE_MAX_PIXELS", "lots")
	if _, err = DecodeOptionsFromConfig(v); err == nil || !strings.Contains(err.Error(), KeyDecodeMaxPixels) {
		t.Fatalf("bad number: %v", err)
	}
	t.Setenv("HPA_DECODE_MAX_PIXELS", "10")
	t.Setenv("HPA_DECODE_YELLOW_FROM", "blue")
	if _, err = DecodeOptionsFromConfig(v); err == nil || !strings.Contains(err.Error(), "YellowFrom") {
		t.Fatalf("bad yellow_from: %v", err)
	}
}
