package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/model/torch"
)

// hpa torch info|check: inspect the libtorch training backend (and, by importing it, link tcmalloc
// into the binary; see internal/model/torch).
func init() {
	subcommands = append(subcommands, func(v *viper.Viper) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "torch",
			Short: "Inspect the libtorch training backend (shim library, allocator, devices)",
		}
		libFlags := func(c *cobra.Command) {
			c.Flags().String("library", torch.DefaultLibrary, "path of libhpatorch.so (built by scripts/setup.sh)")
			c.Flags().Int("threads", 0, "libtorch intra-op threads (0: libtorch's default)")
		}
		info := &cobra.Command{
			Use:   "info",
			Short: "Print the shim version, allocator, threads and CUDA devices",
			Args:  cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				// Bound when run: info and check both carry torch.library / torch.threads flags.
				config.BindFlags(v, c, "torch", nil)
				l, err := torch.OpenWith(config.Torch(v))
				if err != nil {
					return err
				}
				return torch.WriteInfo(c.OutOrStdout(), l)
			},
		}
		libFlags(info)
		check := &cobra.Command{
			Use:   "check",
			Short: "Run a few seeded training steps on random data and print loss and time per step",
			Args:  cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				config.BindFlags(v, c, "torch_check", map[string]string{"library": "torch.library", "threads": "torch.threads"})
				l, err := torch.OpenWith(config.Torch(v))
				if err != nil {
					return err
				}
				return torch.Check(c.OutOrStdout(), l, config.TorchCheck(v))
			},
		}
		libFlags(check)
		check.Flags().String("arch", "seresnext_tiny", "architecture preset")
		check.Flags().String("device", "cpu", "cpu, cuda or cuda:N")
		check.Flags().Int("size", 128, "input size in pixels")
		check.Flags().Int("batch", 8, "batch size")
		check.Flags().Int("steps", 5, "training steps (the first is reported apart as warm-up)")
		check.Flags().Uint64("seed", 1, "seed of the weights and the random batch")
		cmd.AddCommand(info, check)
		return cmd
	})
}
