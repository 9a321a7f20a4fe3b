package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/synth"
)

func init() {
	subcommands = append(subcommands, func(v *viper.Viper) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "synth --out DIR [--samples N] [--size PX] [--seed S] [--workers W]",
			Short: "Write a reproducible synthetic HPA dataset (DIR/train/*.png + DIR/train.csv)",
			Long: "Writes N synthetic samples in the exact HPA competition format: DIR/train/{Id}_{red,green,blue,yellow}.png\n" +
				"(8-bit grayscale, PX x PX) and DIR/train.csv (Id,Target). Label sets follow the real train.csv\n" +
				"distribution; each class gives the green channel its own spatial pattern. The same arguments give\n" +
				"byte-identical files whatever the worker count.",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				s, err := synth.Generate(cmd.Context(), config.Synth(v))
				if err != nil {
					return err
				}
				s.Write(cmd.OutOrStdout())
				return nil
			},
		}
		f := cmd.Flags()
		f.String("out", "hpa-data/synth", "output directory (created if missing)")
		f.Int("samples", 200, "number of samples (4 PNGs each)")
		f.Int("size", 512, "image side in pixels (the real data is 512)")
		f.Int64("seed", 1, "seed; the same arguments give byte-identical files")
		f.Int("workers", 0, "concurrent renderers (0: one per CPU)")
		config.BindFlags(v, cmd, "synth", nil)
		return cmd
	})
}
