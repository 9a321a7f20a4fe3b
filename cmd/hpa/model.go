package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx"
)

func init() {
	subcommands = append(subcommands, func(v *viper.Viper) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "model",
			Short: "Export SE-ResNeXt model sets as ONNX, inspect them; promote, roll back and list the served versions",
		}
		cmd.AddCommand(newModelExportCmd(v), newModelInfoCmd())
		cmd.AddCommand(newModelPromoteCmd(v), newModelRollbackCmd(v), newModelListCmd(v))
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
			return onnx.ExportSet(cmd.OutOrStdout(), config.ModelExport(v))
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

func newModelInfoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info FILE.onnx|MANIFEST.json",
		Short: "Print an ONNX model's arch, parameter count, inputs and outputs; for a manifest, verify every member",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return onnx.Describe(cmd.OutOrStdout(), args[0])
		},
	}
}
