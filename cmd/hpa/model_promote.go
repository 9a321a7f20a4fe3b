package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/consumers/training"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/runs"
)

// openModels connects and opens the model store of the training section.
func openModels(ctx context.Context, v *viper.Viper, logw io.Writer) (*training.Models, func(), error) {
	cfg, err := config.Training(v)
	if err != nil {
		return nil, nil, err
	}
	c, err := training.Dial(ctx, config.NATS(v), config.S3(v), "hpa-model", newLogger(v, logw))
	if err != nil {
		return nil, nil, err
	}
	m, err := training.NewModels(ctx, cfg.Models, c.JS, c.NC, c.Store)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return m, c.Close, nil
}

func printDecision(w io.Writer, d runs.Decision) {
	fmt.Fprintf(w, "%s %s: %s\n", d.Action, d.Version, d.Reason)
}

func newModelPromoteCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "promote VERSION [--force]",
		Short: "Make models/VERSION/ the served model set, if the promotion guard allows (not worse than production)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "model_promote", inferenceFlagKeys)
			m, done, err := openModels(cmd.Context(), v, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer done()
			d, err := m.Decide(cmd.Context(), training.Request{Version: args[0], By: "hpa model promote", Force: v.GetBool("model_promote.force")})
			if err != nil {
				return err
			}
			printDecision(cmd.OutOrStdout(), d)
			if d.Action == runs.ActionReject {
				return &exitError{code: 1, err: fmt.Errorf("promotion of %s refused by the guard (--force skips it)", d.Version)}
			}
			return nil
		},
	}
	cmd.Flags().Bool("force", false, "skip the guard")
	connectionFlags(cmd.Flags())
	return cmd
}

func newModelRollbackCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollback [--force]",
		Short: "Serve again the version the current model replaced (same guard unless --force)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "model_rollback", inferenceFlagKeys)
			m, done, err := openModels(cmd.Context(), v, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer done()
			d, err := m.Rollback(cmd.Context(), "hpa model rollback", v.GetBool("model_rollback.force"))
			if err != nil {
				return err
			}
			printDecision(cmd.OutOrStdout(), d)
			if d.Action == runs.ActionReject {
				return &exitError{code: 1, err: fmt.Errorf("rollback to %s refused by the guard (--force skips it)", d.Version)}
			}
			return nil
		},
	}
	cmd.Flags().Bool("force", false, "skip the guard")
	connectionFlags(cmd.Flags())
	return cmd
}

func newModelListCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the model sets under models/ with their out-of-fold macro-F1; * marks the current one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			config.BindFlags(v, cmd, "", inferenceFlagKeys)
			m, done, err := openModels(cmd.Context(), v, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer done()
			vs, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "\tVERSION\tMACRO-F1\tMEMBERS\tPARENT\tWRITTEN")
			for _, x := range vs {
				mark := ""
				if x.Current {
					mark = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%.4f\t%d\t%s\t%s\n", mark, x.Version, x.MacroF1, x.Members, x.Parent, x.Modified.Format("2006-01-02 15:04:05"))
			}
			return tw.Flush()
		},
	}
	connectionFlags(cmd.Flags())
	return cmd
}
