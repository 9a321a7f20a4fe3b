package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/train/folds"
	"github.com/hpa-plates/hpa/internal/train/runner"
)

func init() {
	subcommands = append(subcommands, func(v *viper.Viper) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "folds --labels train.csv [--images DIR] [--k K] [--seed S] [--out folds.csv] [--max-hamming H]",
			Short: "Split a label file into multilabel-stratified folds (Id,fold), keeping near-duplicates together",
			Long: "Assigns every sample of the label file (Id,Target) to one of K folds by iterative stratification\n" +
				"with a repair pass, so each class's count in each fold is within 1 of its share. With --images,\n" +
				"each sample's channel PNGs (DIR/{Id}_{channel}.png, --hash-channels) are averaged and hashed with a\n" +
				"DCT perceptual hash; samples within --max-hamming bits of each other (transitively) are one group\n" +
				"and land in the same fold. Writes Id,fold to --out and prints per-fold and per-class balance.",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				return runner.Folds(cmd.OutOrStdout(), config.Folds(v))
			},
		}
		f := cmd.Flags()
		f.String("labels", "", "label file Id,Target (required), e.g. the competition train.csv")
		f.String("images", "", "directory of {Id}_{channel}.png; when set, near-duplicate samples stay in one fold")
		f.Int("k", folds.DefaultK, "number of folds")
		f.Uint64("seed", 1, "seed; the same inputs and seed give the same folds")
		f.String("out", "folds.csv", "output file Id,fold")
		f.Int("max-hamming", 6, "largest pHash Hamming distance (of 64 bits) that makes two samples near-duplicates")
		f.StringSlice("hash-channels", folds.DefaultHashChannels, "channels averaged before hashing")
		f.Int("workers", 0, "concurrent image decoders (0: one per CPU)")
		config.BindFlags(v, cmd, "folds", nil)
		return cmd
	})
}
