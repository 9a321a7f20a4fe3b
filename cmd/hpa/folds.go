package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/train"
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
				return runFolds(cmd.OutOrStdout(), foldsOptions{
					Labels: v.GetString("folds.labels"), Images: v.GetString("folds.images"),
					K: v.GetInt("folds.k"), Seed: v.GetUint64("folds.seed"), Out: v.GetString("folds.out"),
					MaxHamming: v.GetInt("folds.max_hamming"), Channels: v.GetStringSlice("folds.hash_channels"),
					Workers: v.GetInt("folds.workers"),
				})
			},
		}
		f := cmd.Flags()
		f.String("labels", "", "label file Id,Target (required), e.g. the competition train.csv")
		f.String("images", "", "directory of {Id}_{channel}.png; when set, near-duplicate samples stay in one fold")
		f.Int("k", train.DefaultFolds, "number of folds")
		f.Uint64("seed", 1, "seed; the same inputs and seed give the same folds")
		f.String("out", "folds.csv", "output file Id,fold")
		f.Int("max-hamming", 6, "largest pHash Hamming distance (of 64 bits) that makes two samples near-duplicates")
		f.StringSlice("hash-channels", train.DefaultHashChannels, "channels averaged before hashing")
		f.Int("workers", 0, "concurrent image decoders (0: one per CPU)")
		config.BindFlags(v, cmd, "folds", nil)
		return cmd
	})
}

type foldsOptions struct {
	Labels, Images, Out string
	K                   int
	Seed                uint64
	MaxHamming          int
	Channels            []string
	Workers             int
}

func runFolds(w io.Writer, o foldsOptions) error {
	if o.Labels == "" {
		return errors.New("folds: --labels is required")
	}
	if o.Out == "" {
		return errors.New("folds: --out is empty")
	}
	start := time.Now()
	ex, err := labels.ReadTargetsFile(o.Labels)
	if err != nil {
		return err
	}
	if len(ex) == 0 {
		return fmt.Errorf("folds: %s has no samples", o.Labels)
	}
	matrix := train.LabelMatrix(ex)
	opt := train.FoldOptions{K: o.K, Seed: o.Seed}
	if o.Images != "" {
		ids := make([]string, len(ex))
		for i, e := range ex {
			ids[i] = e.ID
		}
		hashes, err := train.SampleHashes(o.Images, ids, o.Channels, o.Workers)
		if err != nil {
			return err
		}
		opt.Groups = train.GroupByHash(hashes, o.MaxHamming)
		size := map[int]int{}
		for _, g := range opt.Groups {
			size[g]++
		}
		dupGroups, dupSamples := 0, 0
		for _, n := range size {
			if n > 1 {
				dupGroups++
				dupSamples += n
			}
		}
		fmt.Fprintf(w, "hashed %d samples (%v) in %s: %d near-duplicate groups (max Hamming %d) hold %d samples\n",
			len(ids), o.Channels, time.Since(start).Round(time.Millisecond), dupGroups, o.MaxHamming, dupSamples)
	}
	folds, err := train.StratifiedKFold(matrix, labels.NumClasses, opt)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Labels, err)
	}
	k := o.K
	if k == 0 {
		k = train.DefaultFolds
	}
	if err := writeFoldsCSV(o.Out, ex, folds); err != nil {
		return err
	}
	b, err := train.ComputeFoldBalance(matrix, folds, k, labels.NumClasses)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%d samples from %s -> %d folds (seed %d) in %s: %s\n", len(ex), o.Labels, k, o.Seed,
		time.Since(start).Round(time.Millisecond), o.Out)
	return b.Write(w, labels.ClassNames[:])
}

// writeFoldsCSV writes Id,fold next to the target and renames it into place.
func writeFoldsCSV(path string, ex []train.Example, folds []int) error {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("folds: %w", err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".folds-*.csv")
	if err != nil {
		return fmt.Errorf("folds: %w", err)
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	err = train.WriteFolds(bw, ex, folds)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		tmp.Close()
		return fmt.Errorf("folds: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("folds: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("folds: %w", err)
	}
	return nil
}
