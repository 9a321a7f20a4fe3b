package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// ManifestSchema is the version of the manifest format written by this code.
const ManifestSchema = 1

// Normalization maps 8-bit pixels to model input: x = (p/255 - Mean[c]) / Std[c], per input channel.
type Normalization struct {
	Mean []float32 `json:"mean"`
	Std  []float32 `json:"std"`
}

// Thresholds is how probabilities become labels.
type Thresholds struct {
	// Mode: "uniform" (Uniform for every class), "per_class" (PerClass), or "rate" (PerClass chosen
	// so each class's predicted rate matches its rate in the training labels).
	Mode     string    `json:"mode"`
	Uniform  float64   `json:"uniform"`
	PerClass []float64 `json:"per_class,omitempty"`
	// AtLeastTop predicts the most probable class when no class passes its threshold.
	AtLeastTop bool `json:"at_least_top"`
}

// Member is one ONNX model of the ensemble (one fold x snapshot).
type Member struct {
	File     string             `json:"file"` // relative to the manifest's directory
	SHA256   string             `json:"sha256"`
	Fold     int                `json:"fold"`
	Snapshot int                `json:"snapshot"`
	Metrics  map[string]float64 `json:"metrics,omitempty"`
	// Thresholds, when set, are the member's own: chosen on its own out-of-fold predictions, what
	// the member would ship with alone (bench_quality.py --score-members scores each member on
	// held-out data with them). The ensemble uses the manifest's Thresholds.
	Thresholds *Thresholds `json:"thresholds,omitempty"`
}

// Manifest describes a model set: what inference loads and training promotes.
type Manifest struct {
	Schema        int                `json:"schema"`
	Name          string             `json:"name"`
	Version       string             `json:"version"`
	ParentVersion string             `json:"parent_version,omitempty"`
	Arch          Spec               `json:"arch"`
	InputSize     int                `json:"input_size"`    // square input, pixels
	ChannelOrder  []string           `json:"channel_order"` // e.g. red, green, blue, yellow
	Normalization Normalization      `json:"normalization"`
	ClassNames    []string           `json:"class_names"`
	InputName     string             `json:"input_name"`
	OutputName    string             `json:"output_name"` // logits; the runner applies the sigmoid
	TTAViews      int                `json:"tta_views"`   // 1, 2, 4 or 8 dihedral views
	Thresholds    Thresholds         `json:"thresholds"`
	Members       []Member           `json:"members"`
	Metrics       map[string]float64 `json:"metrics,omitempty"`
	Report        string             `json:"report,omitempty"` // relative path of the training report
}

// Validate checks the fields inference depends on.
func (m *Manifest) Validate() error {
	if m.Schema != ManifestSchema {
		return fmt.Errorf("manifest schema %d, this program reads %d", m.Schema, ManifestSchema)
	}
	if err := m.Arch.Validate(); err != nil {
		return err
	}
	if len(m.Members) == 0 {
		return fmt.Errorf("manifest %s: no members", m.Name)
	}
	if m.InputSize <= 0 {
		return fmt.Errorf("manifest %s: input_size must be positive", m.Name)
	}
	if len(m.ChannelOrder) != m.Arch.InChans || len(m.Normalization.Mean) != m.Arch.InChans || len(m.Normalization.Std) != m.Arch.InChans {
		return fmt.Errorf("manifest %s: channel_order and normalization need %d entries", m.Name, m.Arch.InChans)
	}
	for _, s := range m.Normalization.Std {
		if s <= 0 {
			return fmt.Errorf("manifest %s: normalization std must be positive", m.Name)
		}
	}
	if len(m.ClassNames) != m.Arch.NumClasses {
		return fmt.Errorf("manifest %s: %d class names for %d classes", m.Name, len(m.ClassNames), m.Arch.NumClasses)
	}
	switch m.TTAViews {
	case 1, 2, 4, 8:
	default:
		return fmt.Errorf("manifest %s: tta_views must be 1, 2, 4 or 8, not %d", m.Name, m.TTAViews)
	}
	if err := m.Thresholds.validate(m.Arch.NumClasses); err != nil {
		return fmt.Errorf("manifest %s: %w", m.Name, err)
	}
	for _, mem := range m.Members {
		if mem.Thresholds == nil {
			continue
		}
		if err := mem.Thresholds.validate(m.Arch.NumClasses); err != nil {
			return fmt.Errorf("manifest %s: member %s: %w", m.Name, mem.File, err)
		}
	}
	return nil
}

func (t *Thresholds) validate(classes int) error {
	switch t.Mode {
	case "uniform":
	case "per_class", "rate":
		if len(t.PerClass) != classes {
			return fmt.Errorf("%s thresholds need %d values", t.Mode, classes)
		}
	default:
		return fmt.Errorf("unknown threshold mode %q", t.Mode)
	}
	return nil
}

// Marshal encodes the manifest canonically (indented JSON, trailing newline): the bytes the digest covers.
func (m *Manifest) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Digest is "sha256:<hex>" of the canonical encoding; label JSON records it.
func (m *Manifest) Digest() (string, error) {
	b, err := m.Marshal()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// ReadManifest parses and validates a manifest file.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model manifest: %w", err)
	}
	return ParseManifest(b, path)
}

// ParseManifest parses and validates manifest bytes; name is used in errors.
func ParseManifest(b []byte, name string) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("model manifest %s: %w", name, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("model manifest %s: %w", name, err)
	}
	return &m, nil
}

// WriteManifest writes the canonical encoding to dir/manifest.json atomically.
func WriteManifest(dir string, m *Manifest) (string, error) {
	if err := m.Validate(); err != nil {
		return "", err
	}
	b, err := m.Marshal()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "manifest.json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// FileSHA256 returns the hex sha256 of a file (members are verified against it on load).
func FileSHA256(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// DefaultNormalization is the input normalization of models this project trains: HPA channel
// statistics are close to 0.05-0.08 mean; a plain [0,1] scaling with mean 0.08 / std 0.13 keeps
// activations in range.
func DefaultNormalization(chans int) Normalization {
	n := Normalization{Mean: make([]float32, chans), Std: make([]float32, chans)}
	for i := range n.Mean {
		n.Mean[i], n.Std[i] = 0.08, 0.13
	}
	return n
}
