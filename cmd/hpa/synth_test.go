package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/synth"
)

func TestSynthCommand(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a")
	out, err := runCLI(t, "synth", "--out", a, "--samples", "3", "--size", "32", "--seed", "4", "--workers", "1")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "wrote 3 samples (12 PNGs") {
		t.Errorf("output: %s", out)
	}
	rows, err := labels.ReadTargetsFile(filepath.Join(a, "train.csv"))
	if err != nil || len(rows) != 3 {
		t.Fatalf("train.csv: %v %v", rows, err)
	}
	want, _ := synth.Plan(4, 3)
	for i := range rows {
		if rows[i].ID != want[i].ID {
			t.Errorf("row %d Id %s, want %s", i, rows[i].ID, want[i].ID)
		}
		for _, ch := range []string{"red", "green", "blue", "yellow"} {
			if _, err := os.Stat(filepath.Join(a, "train", rows[i].ID+"_"+ch+".png")); err != nil {
				t.Error(err)
			}
		}
	}
	// Environment and config file supply values the flags leave out; workers do not change bytes.
	b := filepath.Join(t.TempDir(), "b")
	cfgFile := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfgFile, []byte("synth:\n  samples: 3\n  size: 32\n  workers: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HPA_SYNTH_SEED", "4")
	if out, err := runCLI(t, "synth", "--config", cfgFile, "--out", b); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ca, _ := os.ReadFile(filepath.Join(a, "train.csv"))
	cb, _ := os.ReadFile(filepath.Join(b, "train.csv"))
	if !bytes.Equal(ca, cb) {
		t.Errorf("config/env run differs:\n%s\n%s", ca, cb)
	}
	pa, _ := os.ReadFile(filepath.Join(a, "train", rows[0].ID+"_green.png"))
	pb, _ := os.ReadFile(filepath.Join(b, "train", rows[0].ID+"_green.png"))
	if len(pa) == 0 || !bytes.Equal(pa, pb) {
		t.Error("PNG differs between 1 and 3 workers")
	}
}

func TestSynthCommandBadOptions(t *testing.T) {
	_, err := runCLI(t, "synth", "--out", t.TempDir(), "--samples", "2", "--size", "8")
	var oe *synth.OptionError
	if !errors.As(err, &oe) || oe.Option != "size" {
		t.Errorf("size 8: %v", err)
	}
	_, err = runCLI(t, "synth", "--out", t.TempDir(), "--samples", "0", "--size", "32")
	if !errors.As(err, &oe) || oe.Option != "samples" {
		t.Errorf("0 samples: %v", err)
	}
}
