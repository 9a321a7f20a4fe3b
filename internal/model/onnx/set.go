package onnx

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// Defaults of the model set `hpa model export` writes.
const (
	exportTTAViews  = 8
	exportThreshold = 0.2
)

// SetOptions configure ExportSet (`hpa model export`, config section model_export.*).
type SetOptions struct {
	// Arch is the architecture preset; Stem overrides its stem when set.
	Arch, Stem string
	// Out is the model-set directory (created if missing).
	Out string
	// Weights is a timm-named safetensors checkpoint every member starts from ("" = fresh init).
	Weights string
	// Members is the number of members (1..99); Size the square input size (>= 32).
	Members, Size int
	// Seed: member i is initialized (or its replaced classifier) with Seed+i.
	Seed int64
}

// ExportSet writes o.Members ONNX members (member-XX.onnx) of the architecture and the manifest
// describing the set, reporting each file on w.
func ExportSet(w io.Writer, p SetOptions) error {
	spec, err := model.Preset(p.Arch)
	if err != nil {
		return err
	}
	if p.Stem != "" {
		spec.Stem = model.Stem(p.Stem)
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	switch {
	case p.Out == "":
		return errors.New("model export: --out is required")
	case p.Members < 1 || p.Members > 99:
		return fmt.Errorf("model export: --members %d outside 1..99", p.Members)
	case p.Size < 32:
		return fmt.Errorf("model export: --size %d is below 32 pixels", p.Size)
	case spec.NumClasses != labels.NumClasses || spec.InChans != len(pipeline.ChannelNames):
		return fmt.Errorf("model export: arch %s has %d classes and %d channels; a model set needs %d and %d",
			spec.Name, spec.NumClasses, spec.InChans, labels.NumClasses, len(pipeline.ChannelNames))
	}
	if err := os.MkdirAll(p.Out, 0o755); err != nil {
		return fmt.Errorf("model export: %w", err)
	}
	m := &model.Manifest{
		Schema:        model.ManifestSchema,
		Name:          spec.Name,
		Arch:          spec,
		InputSize:     p.Size,
		ChannelOrder:  append([]string(nil), pipeline.ChannelNames[:]...),
		Normalization: model.DefaultNormalization(spec.InChans),
		ClassNames:    append([]string(nil), labels.ClassNames[:]...),
		InputName:     "input",
		OutputName:    "logits",
		TTAViews:      exportTTAViews,
		Thresholds:    model.Thresholds{Mode: "uniform", Uniform: exportThreshold},
	}
	digest := sha256.New()
	for i := 0; i < p.Members; i++ {
		seed := p.Seed + int64(i)
		var weights model.Weights
		if p.Weights != "" {
			var rep *model.AdaptReport
			weights, rep, err = model.WeightsFromSafetensors(p.Weights, spec, seed)
			if err != nil {
				return err
			}
			if i == 0 {
				fmt.Fprintln(w, "weights:", rep)
			}
		} else {
			weights = model.InitWeights(spec, seed)
		}
		file := fmt.Sprintf("member-%02d.onnx", i)
		path := filepath.Join(p.Out, file)
		opt := ExportOptions{InputSize: p.Size, InputName: m.InputName, OutputName: m.OutputName,
			DocString: fmt.Sprintf("%s member %d (seed %d, weights %q)", spec.Name, i, seed, p.Weights)}
		if err := ExportFile(path, spec, weights, opt); err != nil {
			return err
		}
		sum, err := model.FileSHA256(path)
		if err != nil {
			return fmt.Errorf("model export: %w", err)
		}
		digest.Write([]byte(sum))
		m.Members = append(m.Members, model.Member{File: file, SHA256: sum, Fold: i, Snapshot: 0})
		fmt.Fprintf(w, "wrote %s sha256 %s\n", path, sum)
	}
	m.Version = "export-" + hex.EncodeToString(digest.Sum(nil))[:12]
	mp, err := model.WriteManifest(p.Out, m)
	if err != nil {
		return fmt.Errorf("model export: %w", err)
	}
	fmt.Fprintf(w, "wrote %s: %s, %d members, %d parameters each, input %dx%d\n",
		mp, spec.Name, p.Members, spec.ParamCount(), p.Size, p.Size)
	return nil
}

// MemberError reports manifest members that are missing or do not match their sha256.
type MemberError struct {
	Manifest string
	Problems []string
}

func (e *MemberError) Error() string {
	return fmt.Sprintf("manifest %s: %d member(s) failed verification: %s", e.Manifest, len(e.Problems), strings.Join(e.Problems, "; "))
}

// Describe writes what an ONNX file is (arch, parameters, opset, inputs, outputs) or, for a
// manifest, the set and each member, verifying the members' digests (a *MemberError lists the
// members that fail).
func Describe(w io.Writer, path string) error {
	isJSON, err := looksLikeJSON(path)
	if err != nil {
		return fmt.Errorf("model info: %w", err)
	}
	if !isJSON {
		mi, err := InfoFile(path)
		if err != nil {
			return err
		}
		printFileInfo(w, path, mi, "")
		return nil
	}
	m, err := model.ReadManifest(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "manifest %s\n  name %s version %s\n  arch %s (%d parameters), input %dx%d %s, %d classes, tta %d, thresholds %s %.3g\n",
		path, m.Name, m.Version, m.Arch.Name, m.Arch.ParamCount(), m.InputSize, m.InputSize,
		strings.Join(m.ChannelOrder, "/"), len(m.ClassNames), m.TTAViews, m.Thresholds.Mode, m.Thresholds.Uniform)
	dir := filepath.Dir(path)
	merr := &MemberError{Manifest: path}
	for _, mem := range m.Members {
		mp := filepath.Join(dir, filepath.FromSlash(mem.File))
		sum, err := model.FileSHA256(mp)
		switch {
		case err != nil:
			merr.Problems = append(merr.Problems, fmt.Sprintf("%s: %v", mem.File, err))
			fmt.Fprintf(w, "member %s (fold %d, snapshot %d): MISSING\n", mem.File, mem.Fold, mem.Snapshot)
			continue
		case sum != mem.SHA256:
			merr.Problems = append(merr.Problems, fmt.Sprintf("%s: sha256 %s, manifest says %s", mem.File, sum, mem.SHA256))
			fmt.Fprintf(w, "member %s (fold %d, snapshot %d): SHA256 MISMATCH\n", mem.File, mem.Fold, mem.Snapshot)
			continue
		}
		mi, err := InfoFile(mp)
		if err != nil {
			merr.Problems = append(merr.Problems, err.Error())
			continue
		}
		if mi.Arch != "" && mi.Arch != m.Arch.Name {
			merr.Problems = append(merr.Problems, fmt.Sprintf("%s: arch %s, manifest says %s", mem.File, mi.Arch, m.Arch.Name))
		}
		printFileInfo(w, mp, mi, fmt.Sprintf("fold %d, snapshot %d, sha256 ok", mem.Fold, mem.Snapshot))
	}
	if len(merr.Problems) > 0 {
		return merr
	}
	return nil
}

func printFileInfo(w io.Writer, path string, mi *FileInfo, note string) {
	if note != "" {
		note = " (" + note + ")"
	}
	arch := mi.Arch
	if arch == "" {
		arch = "unknown (no " + MetaArch + " metadata)"
	}
	fmt.Fprintf(w, "model %s%s\n  arch %s\n  parameters %d\n  opset %d, IR %d, producer %s, %d nodes\n",
		path, note, arch, mi.ParamCount, mi.Opset, mi.IRVersion, mi.Producer, mi.Nodes)
	for _, in := range mi.Inputs {
		fmt.Fprintf(w, "  input  %s\n", in)
	}
	for _, out := range mi.Outputs {
		fmt.Fprintf(w, "  output %s\n", out)
	}
}

// looksLikeJSON tells a manifest from an ONNX file by its first non-space byte.
func looksLikeJSON(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for {
		b, err := r.ReadByte()
		if err != nil {
			if err == io.EOF {
				return false, fmt.Errorf("%s is empty", path)
			}
			return false, err
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return b == '{', nil
	}
}
