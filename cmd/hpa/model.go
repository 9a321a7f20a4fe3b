package main

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

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// Defaults of the model set `hpa model export` writes.
const (
	exportTTAViews  = 8
	exportThreshold = 0.2
)

func init() {
	subcommands = append(subcommands, func(v *viper.Viper) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "model",
			Short: "Export SE-ResNeXt model sets as ONNX and inspect ONNX models and manifests",
		}
		cmd.AddCommand(newModelExportCmd(v), newModelInfoCmd())
		return cmd
	})
}

func newModelExportCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export --arch NAME --out DIR [--members K] [--weights FILE.safetensors] [--size PX] [--seed S] [--stem maxpool|conv]",
		Short: "Write K ONNX members (member-XX.onnx) and DIR/manifest.json",
		Long: "Writes K ONNX members of the architecture and a manifest describing the set. Without --weights\n" +
			"member i is freshly initialized with seed S+i (timm's init); with --weights every member starts\n" +
			"from the timm-named safetensors checkpoint (RGB stem adapted to 4 channels, a classifier of\n" +
			"another class count replaced by the seeded init S+i).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runModelExport(cmd.OutOrStdout(), exportParams{
				Arch: v.GetString("model_export.arch"), Out: v.GetString("model_export.out"),
				Members: v.GetInt("model_export.members"), Weights: v.GetString("model_export.weights"),
				Size: v.GetInt("model_export.size"), Seed: v.GetInt64("model_export.seed"),
				Stem: v.GetString("model_export.stem"),
			})
		},
	}
	f := cmd.Flags()
	f.String("arch", "seresnext50_32x4d", "architecture preset ("+strings.Join(model.PresetNames(), ", ")+")")
	f.String("out", "", "output directory (created if missing)")
	f.Int("members", 1, "number of ONNX members (folds) to write")
	f.String("weights", "", "timm-named safetensors checkpoint to start from (default: fresh init)")
	f.Int("size", 512, "square input size in pixels")
	f.Int64("seed", 0, "init seed; member i uses seed+i")
	f.String("stem", "", "stem after the 7x7 conv: maxpool or conv (default: the preset's)")
	config.BindFlags(v, cmd, "model_export", nil)
	return cmd
}

type exportParams struct {
	Arch, Out, Weights, Stem string
	Members, Size            int
	Seed                     int64
}

func runModelExport(w io.Writer, p exportParams) error {
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
		opt := onnx.ExportOptions{InputSize: p.Size, InputName: m.InputName, OutputName: m.OutputName,
			DocString: fmt.Sprintf("%s member %d (seed %d, weights %q)", spec.Name, i, seed, p.Weights)}
		if err := onnx.ExportFile(path, spec, weights, opt); err != nil {
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

func newModelInfoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info FILE.onnx|MANIFEST.json",
		Short: "Print an ONNX model's arch, parameter count, inputs and outputs; for a manifest, verify every member",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runModelInfo(cmd.OutOrStdout(), args[0])
		},
	}
}

// MemberError reports manifest members that are missing or do not match their sha256.
type MemberError struct {
	Manifest string
	Problems []string
}

func (e *MemberError) Error() string {
	return fmt.Sprintf("manifest %s: %d member(s) failed verification: %s", e.Manifest, len(e.Problems), strings.Join(e.Problems, "; "))
}

func runModelInfo(w io.Writer, path string) error {
	isJSON, err := looksLikeJSON(path)
	if err != nil {
		return fmt.Errorf("model info: %w", err)
	}
	if !isJSON {
		mi, err := onnx.InfoFile(path)
		if err != nil {
			return err
		}
		printModelInfo(w, path, mi, "")
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
		mi, err := onnx.InfoFile(mp)
		if err != nil {
			merr.Problems = append(merr.Problems, err.Error())
			continue
		}
		if mi.Arch != "" && mi.Arch != m.Arch.Name {
			merr.Problems = append(merr.Problems, fmt.Sprintf("%s: arch %s, manifest says %s", mem.File, mi.Arch, m.Arch.Name))
		}
		printModelInfo(w, mp, mi, fmt.Sprintf("fold %d, snapshot %d, sha256 ok", mem.Fold, mem.Snapshot))
	}
	if len(merr.Problems) > 0 {
		return merr
	}
	return nil
}

func printModelInfo(w io.Writer, path string, mi *onnx.ModelInfo, note string) {
	if note != "" {
		note = " (" + note + ")"
	}
	arch := mi.Arch
	if arch == "" {
		arch = "unknown (no " + onnx.MetaArch + " metadata)"
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
