package main

import (
	"errors"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/benchtrain"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/model/torch"
)

// hpa bench train: the training benchmarks against their goals (internal/benchtrain).
func init() {
	subcommands = append(subcommands, func(v *viper.Viper) *cobra.Command {
		bench := &cobra.Command{
			Use:   "bench",
			Short: "Benchmarks against the project's performance goals",
		}
		cmd := &cobra.Command{
			Use:   "train",
			Short: "Train step Go+libtorch vs PyTorch, and data-loader vs train-step samples/s",
			Long: "Times training steps of one architecture through the libtorch shim and through a PyTorch-Python\n" +
				"script (scripts/bench_train_step.py) on the same libtorch, batch, threads and allocator (the child\n" +
				"runs with LD_PRELOAD of tcmalloc), alternating for --rounds rounds; checks that the Python model has\n" +
				"the spec's state dict and parameter count; then measures the training data loader (PNG decode,\n" +
				"resize, augment, normalize in --workers goroutines) on an `hpa synth` dataset (--data, or one made\n" +
				"in a temporary directory). Prints the raw numbers and both ratios against the goals: step time\n" +
				"Go/Python <= 1.05 (process CPU time; wall time beside it) and loader/step samples/s >= 1.5.",
			Args: cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				config.BindFlags(v, c, "bench_train", map[string]string{"library": "torch.library"})
				o, err := config.BenchTrain(v)
				if err != nil {
					return err
				}
				err = benchtrain.Main(c.Context(), o, c.OutOrStdout())
				if errors.Is(err, benchtrain.ErrGoalNotMet) {
					return &exitError{code: 1, err: err}
				}
				return err
			},
		}
		f := cmd.Flags()
		f.String("library", torch.DefaultLibrary, "path of libhpatorch.so (built by scripts/setup.sh)")
		f.String("arch", "seresnext_tiny", "architecture preset")
		f.String("stem", "", "stem after the 7x7 conv: maxpool | conv (empty: the preset's)")
		f.Int("size", 128, "input size in pixels")
		f.Int("batch", 16, "batch size")
		f.Int("steps", 10, "timed training steps per round and side")
		f.Int("warmup", 2, "untimed steps before them, per round and side")
		f.Int("rounds", 2, "rounds of Go then Python steps (alternating evens out the neighbours' load)")
		f.Int("threads", 1, "libtorch intra-op threads on both sides")
		f.Int("workers", 2, "data-loader goroutines")
		f.String("data", "", "dataset for the loader (train.csv + images); empty: `hpa synth` into a temporary directory")
		f.Int("samples", 64, "samples the loader loads (and synthesizes when --data is empty); 0 with --data: all")
		f.Int("synth-size", 512, "image side of the synthesized dataset (the real data is 512)")
		f.Uint64("seed", 1, "seed of the weights, the random batch, the synthetic data and the augmentations")
		f.String("python", benchtrain.DefaultPython, "interpreter with Debian's python3-torch")
		f.String("script", benchtrain.DefaultScript, "the PyTorch baseline script")
		f.String("tcmalloc", "", "LD_PRELOAD for the Python child; empty: find libtcmalloc_minimal.so.4 (none when this binary uses glibc malloc)")
		f.Bool("no-inplace", false, "out-of-place ReLUs in the Python model (timm's, the default, are in-place)")
		f.Bool("strict", false, "exit with status 1 when a goal is not met")
		bench.AddCommand(cmd)
		return bench
	})
}
