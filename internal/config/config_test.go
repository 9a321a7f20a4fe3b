package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"
)

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("ort:\n  intra_threads: 3\n  provider: cuda\n  library: /from/file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HPA_ORT_PROVIDER", "tensorrt")
	t.Setenv("HPA_ORT_LIBRARY", "/from/env")
	v := New()
	cmd := &cobra.Command{Use: "x", Run: func(*cobra.Command, []string) {}}
	cmd.Flags().Int("intra-threads", 1, "")
	cmd.Flags().String("provider", "cpu", "")
	cmd.Flags().String("library", "", "")
	cmd.Flags().Int("batch", 7, "")
	BindFlags(v, cmd, "ort", nil)
	if err := cmd.Flags().Parse([]string{"--library", "/from/flag"}); err != nil {
		t.Fatal(err)
	}
	if err := Load(v, file); err != nil {
		t.Fatal(err)
	}
	if got := v.GetString("ort.library"); got != "/from/flag" {
		t.Errorf("flag should win: %q", got)
	}
	if got := v.GetString("ort.provider"); got != "tensorrt" {
		t.Errorf("env should beat file: %q", got)
	}
	if got := v.GetInt("ort.intra_threads"); got != 3 {
		t.Errorf("file should beat default: %d", got)
	}
	if got := v.GetInt("ort.batch"); got != 7 {
		t.Errorf("default: %d", got)
	}
	if err := Load(New(), filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("explicit missing config file must be an error")
	}
}
