package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/consumers/inference"
	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/synth"
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
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, v, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	upFlags(cmd.Flags(), "127.0.0.1:0", 0, "127.0.0.1:0", "hpa-demo")
	f := cmd.Flags()
	f.Int("samples", 16, "samples on the synthetic plate")
	f.Int("size", 128, "image side in pixels")
	f.Int64("seed", 1, "synthetic plate seed")
	f.String("plate", "demo", "plate name (the key folder under the upload prefix)")
	f.Duration("timeout", 5*time.Minute, "give up when the labels are not all there by then")
	f.Bool("serve", false, "keep the service and the plate viewer running after the table, until Ctrl-C")
	return cmd
}

// demoResult is one row of the demo table.
type demoResult struct {
	ID        string
	Truth     []int
	Predicted []int
	Error     string
}

func runDemo(ctx context.Context, v *viper.Viper, out, logw io.Writer) error {
	o := upOptionsFrom(v, "demo")
	n, size, seed := v.GetInt("demo.samples"), v.GetInt("demo.size"), v.GetInt64("demo.seed")
	plate := v.GetString("demo.plate")
	if n < 1 {
		return fmt.Errorf("demo: --samples must be at least 1, not %d", n)
	}
	if plate == "" || strings.ContainsAny(plate, "/\\") || plate == "." || plate == ".." {
		return fmt.Errorf("demo: --plate %q must be one non-empty path element", plate)
	}
	synthDir := filepath.Join(o.DataDir, fmt.Sprintf("synth-%d-%d-%d", seed, n, size))
	if _, err := synth.Generate(ctx, synth.Options{Out: synthDir, Samples: n, Size: size, Seed: seed}); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	truth, err := pipeline.ReadLabelsFile(filepath.Join(synthDir, "train.csv"))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	upCtx, cancelUp := context.WithCancel(ctx)
	defer cancelUp()
	ready := make(chan Endpoints, 1)
	upErr := make(chan error, 1)
	go func() { upErr <- runUp(upCtx, v, o, out, logw, ready) }()
	var ep Endpoints
	select {
	case ep = <-ready:
	case err := <-upErr:
		return err
	}
	stopUp := func() error {
		cancelUp()
		return <-upErr
	}
	results, err := demoUploadAndWait(ctx, v, ep, plate, synthDir, truth)
	if err != nil {
		_ = stopUp()
		return err
	}
	printDemoTable(out, plate, results)
	if ep.ViewerURL != "" {
		serve := v.GetBool("demo.serve")
		if serve {
			fmt.Fprintln(out, "\nThe service keeps running until Ctrl-C; look at the plate in the viewer:")
		} else {
			fmt.Fprintln(out, "\nThe service stops now (hpa demo --serve, or make demo in a terminal, keeps it and the viewer open):")
		}
		fmt.Fprintf(out, "viewer: %splates/%s  (user %s, password %s)\n", ep.ViewerURL, url.PathEscape(plate), ep.AccessKey, ep.SecretKey)
		if serve {
			<-ctx.Done()
		}
	}
	return stopUp()
}

func demoUploadAndWait(ctx context.Context, v *viper.Viper, ep Endpoints, plate, synthDir string, truth []synth.LabeledID) ([]demoResult, error) {
	awsCfg := aws.Config{Region: ep.Region, Credentials: credentials.NewStaticCredentialsProvider(ep.AccessKey, ep.SecretKey, "")}
	store := &inference.S3Store{Client: inference.NewS3Client(awsCfg, inference.S3Options{Endpoint: ep.S3Endpoint, PathStyle: true}), Bucket: ep.Bucket}
	imgDir := filepath.Join(synthDir, "train")
	for _, row := range truth {
		for _, ch := range pipeline.ChannelNames {
			name := row.ID + "_" + ch + ".png"
			data, err := os.ReadFile(filepath.Join(imgDir, name))
			if err != nil {
				return nil, fmt.Errorf("demo: %w", err)
			}
			if err := store.Put(ctx, ep.UploadPrefix+plate+"/"+name, data, "image/png"); err != nil {
				return nil, fmt.Errorf("demo: upload: %w", err)
			}
		}
	}
	deadline := time.Now().Add(v.GetDuration("demo.timeout"))
	results := make([]demoResult, len(truth))
	for i, row := range truth {
		results[i] = demoResult{ID: row.ID, Truth: slices.Sorted(slices.Values(row.Labels))}
	}
	for {
		pending := 0
		for i := range results {
			r := &results[i]
			if r.Predicted != nil || r.Error != "" {
				continue
			}
			if b, err := store.Get(ctx, ep.LabelsPrefix+plate+"/"+r.ID+".json", 1<<20); err == nil {
				l, err := pipeline.ParseLabel(b)
				if err != nil {
					r.Error = err.Error()
				} else {
					r.Predicted = l.PredictedIDs()
				}
				continue
			}
			if b, err := store.Get(ctx, ep.LabelsPrefix+plate+"/"+r.ID+".error.json", 1<<20); err == nil {
				rec, err := pipeline.ParseError(b)
				if err != nil {
					r.Error = err.Error()
				} else {
					r.Error = rec.Kind + ": " + rec.Reason
				}
				continue
			}
			pending++
		}
		if pending == 0 {
			return results, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("demo: %d of %d samples still unlabeled after %s", pending, len(results), v.GetDuration("demo.timeout"))
		}
		select {
		case <-ctx.Done():
			return nil, errors.New("demo: interrupted")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func classList(ids []int) string {
	if len(ids) == 0 {
		return "-"
	}
	parts := make([]string, len(ids))
	for i, k := range ids {
		parts[i] = fmt.Sprintf("%d %s", k, pipeline.ClassNames[k])
	}
	return strings.Join(parts, ", ")
}

// macroF1 averages the per-class F1 over the classes that occur in the truth or the predictions.
func macroF1(results []demoResult) (f1 float64, classes int) {
	var tp, fp, fn [pipeline.NumClasses]int
	for _, r := range results {
		if r.Error != "" {
			continue
		}
		for k := range pipeline.NumClasses {
			t, p := slices.Contains(r.Truth, k), slices.Contains(r.Predicted, k)
			switch {
			case t && p:
				tp[k]++
			case p:
				fp[k]++
			case t:
				fn[k]++
			}
		}
	}
	var sum float64
	for k := range pipeline.NumClasses {
		if tp[k]+fp[k]+fn[k] == 0 {
			continue
		}
		classes++
		sum += 2 * float64(tp[k]) / float64(2*tp[k]+fp[k]+fn[k])
	}
	if classes == 0 {
		return 0, 0
	}
	return sum / float64(classes), classes
}

func printDemoTable(w io.Writer, plate string, results []demoResult) {
	sort.Slice(results, func(i, j int) bool { return results[i].ID < results[j].ID })
	fmt.Fprintf(w, "\nplate %s: %d samples\n", plate, len(results))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "sample\ttrue labels\tpredicted labels")
	failed := 0
	for _, r := range results {
		pred := classList(r.Predicted)
		if r.Error != "" {
			pred, failed = "ERROR "+r.Error, failed+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.ID, classList(r.Truth), pred)
	}
	_ = tw.Flush()
	f1, classes := macroF1(results)
	fmt.Fprintf(w, "macro-F1 %.4f over %d classes (%d labeled, %d failed)\n", f1, classes, len(results)-failed, failed)
}
