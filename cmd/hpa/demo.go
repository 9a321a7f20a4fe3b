package main

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/local"
	"github.com/hpa-plates/hpa/internal/serve"
)

func init() {
	subcommands = append(subcommands, newDemoCmd)
}

func newDemoCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start the service (as `hpa up`), upload a synthetic plate through the S3 API and show its labels",
		Long: `Runs what "hpa up" runs, renders a synthetic plate with known labels (hpa synth), uploads its images
through the S3 API, waits for every label, prints a table (sample, true labels, predicted labels) and the
macro-F1 over the classes present in the truth or the predictions, then stops the service.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "demo", nil)
			ctx, stop := serve.SignalContext(cmd.Context())
			defer stop()
			o := config.Demo(v)
			start, err := inferenceOnStack(v, cmd.ErrOrStderr(), &o.Up)
			if err != nil {
				return err
			}
			if v.GetBool("demo.retrain") {
				return retrainDemo(ctx, v, cmd.ErrOrStderr(), cmd.OutOrStdout(), o, start)
			}
			return local.Demo(ctx, o, cmd.OutOrStdout(), start)
		},
	}
	upFlags(cmd.Flags(), "127.0.0.1:0", 0, "127.0.0.1:0", "hpa-demo")
	f := cmd.Flags()
	f.Int("samples", 16, "samples on the synthetic plate")
	f.Int("size", 128, "image side in pixels")
	f.Int64("seed", 1, "synthetic plate seed")
	f.String("plate", "demo", "plate name (the key folder under the upload prefix)")
	f.Duration("timeout", 5*time.Minute, "give up when the labels are not all there by then")
	f.Bool("retrain", false, "show the training loop: upload a labeled set, follow the run, the promotion decision, then a plate labeled by the new version")
	f.Int("train-samples", 64, "labeled samples uploaded by --retrain")
	return cmd
}
