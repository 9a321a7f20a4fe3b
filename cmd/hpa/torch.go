package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/model"
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
				return torchInfo(c.OutOrStdout(), l)
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
				return torchCheck(c.OutOrStdout(), l, torchCheckOpts{
					arch: v.GetString("torch_check.arch"), device: v.GetString("torch_check.device"),
					size: v.GetInt("torch_check.size"), batch: v.GetInt("torch_check.batch"),
					steps: v.GetInt("torch_check.steps"), seed: v.GetUint64("torch_check.seed"),
				})
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

func torchInfo(w io.Writer, l *torch.Lib) error {
	mapped, err := torch.AllocatorMapped()
	if err != nil {
		return fmt.Errorf("torch info: %w", err)
	}
	fmt.Fprintf(w, "library:   %s\n", l.Path())
	fmt.Fprintf(w, "version:   %s\n", l.Version())
	fmt.Fprintf(w, "allocator: %s (tcmalloc mapped: %v)\n", torch.Allocator, mapped)
	fmt.Fprintf(w, "threads:   %d\n", l.NumThreads())
	fmt.Fprintf(w, "cuda:      %v (%d devices)\n", l.CUDAAvailable(), l.DeviceCount())
	return nil
}

type torchCheckOpts struct {
	arch, device       string
	size, batch, steps int
	seed               uint64
}

func torchCheck(w io.Writer, l *torch.Lib, o torchCheckOpts) error {
	if o.size <= 0 || o.batch <= 0 || o.steps <= 0 {
		return fmt.Errorf("torch check: size, batch and steps must be positive (got %d, %d, %d)", o.size, o.batch, o.steps)
	}
	spec, err := model.Preset(o.arch)
	if err != nil {
		return fmt.Errorf("torch check: %w", err)
	}
	m, err := l.NewModel(spec, o.device, o.seed)
	if err != nil {
		return err
	}
	defer m.Close()
	opt, err := torch.NewSGD(m, torch.SGDOptions{LR: 0.01, Momentum: 0.9})
	if err != nil {
		return err
	}
	defer opt.Close()
	rng := rand.New(rand.NewPCG(o.seed, 0))
	x := make([]float32, o.batch*spec.InChans*o.size*o.size)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	y := make([]float32, o.batch*spec.NumClasses)
	for i := range y {
		if rng.Float64() < 0.1 {
			y[i] = 1
		}
	}
	var rest time.Duration
	for i := 0; i < o.steps; i++ {
		t0 := time.Now()
		r, err := m.TrainStep(opt, x, o.batch, o.size, o.size, y, torch.StepOptions{Loss: torch.LossBCE})
		if err != nil {
			return err
		}
		d := time.Since(t0)
		if i > 0 {
			rest += d
		}
		fmt.Fprintf(w, "step %d: loss %.5f  %.1f ms\n", i+1, r.Loss, float64(d.Microseconds())/1000)
	}
	if o.steps > 1 {
		fmt.Fprintf(w, "%s %dpx batch %d on %s, allocator %s: %.1f ms/step after warm-up\n", o.arch, o.size, o.batch,
			o.device, torch.Allocator, float64(rest.Microseconds())/1000/float64(o.steps-1))
	}
	return nil
}
