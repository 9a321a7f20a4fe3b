// Command hpa labels Human Protein Atlas fluorescence-microscopy samples: one binary, many subcommands.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
)

// subcommands register themselves here from their own files (init functions), so each lives apart.
var subcommands []func(v *viper.Viper) *cobra.Command

// newRoot builds the command tree on a fresh configuration (flags > HPA_* env > config file >
// endpoints file > defaults), so every in-process run (tests run many) starts from the same state.
func newRoot() *cobra.Command { return newRootWith(config.New()) }

func newRootWith(cfg *viper.Viper) *cobra.Command {
	var cfgPath, endpointsPath string
	root := &cobra.Command{
		Use:           "hpa",
		Short:         "Label Human Protein Atlas plates: protein localization in 28 compartments",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := config.Load(cfg, cfgPath); err != nil {
				return err
			}
			if endpointsPath != "" {
				return config.LoadEndpoints(cfg, endpointsPath)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&cfgPath, "config", "", "config file (default ./config.yaml when present)")
	root.PersistentFlags().StringVar(&endpointsPath, "endpoints", "", "endpoints.json of `hpa up`: the defaults of the S3 and NATS settings (flags, HPA_* and --config override them)")
	for _, mk := range subcommands {
		root.AddCommand(mk(cfg))
	}
	return root
}

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hpa:", err)
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit status (e.g. 1 when some samples failed but others were labeled).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 2
}
