package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/synth"
	"github.com/hpa-plates/hpa/internal/train/eval"
)

// DemoOptions configure Demo.
type DemoOptions struct {
	Up UpOptions
	// Samples, Size and Seed describe the synthetic plate (hpa synth).
	Samples, Size int
	Seed          int64
	// Plate is the key folder under the upload prefix.
	Plate string
	// Timeout bounds the wait for the labels.
	Timeout time.Duration
	// Serve keeps the service (and the plate viewer) running after the table, until ctx ends.
	Serve bool
}

// DemoResult is one row of the demo table.
type DemoResult struct {
	ID        string
	Truth     []int
	Predicted []int
	Error     string
}

// Demo runs what Up runs, renders a synthetic plate with known labels, uploads its images through
// the S3 API, waits for every label, prints a table (sample, true labels, predicted labels) and
// the macro-F1 over the classes present in the truth or the predictions, then stops the service.
func Demo(ctx context.Context, o DemoOptions, out io.Writer, start Factory) error {
	if o.Samples < 1 {
		return fmt.Errorf("demo: --samples must be at least 1, not %d", o.Samples)
	}
	if o.Plate == "" || strings.ContainsAny(o.Plate, "/\\") || o.Plate == "." || o.Plate == ".." {
		return fmt.Errorf("demo: --plate %q must be one non-empty path element", o.Plate)
	}
	synthDir := filepath.Join(o.Up.Stack.DataDir, fmt.Sprintf("synth-%d-%d-%d", o.Seed, o.Samples, o.Size))
	if _, err := synth.Generate(ctx, synth.Options{Out: synthDir, Samples: o.Samples, Size: o.Size, Seed: o.Seed}); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	truth, err := labels.ReadTargetsFile(filepath.Join(synthDir, "train.csv"))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	upCtx, cancelUp := context.WithCancel(ctx)
	defer cancelUp()
	ready := make(chan Endpoints, 1)
	upErr := make(chan error, 1)
	go func() { upErr <- Up(upCtx, o.Up, out, start, ready) }()
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
	results, err := demoUploadAndWait(ctx, o, ep, synthDir, truth)
	if err != nil {
		_ = stopUp()
		return err
	}
	PrintDemoTable(out, o.Plate, results)
	if ep.ViewerURL != "" {
		if o.Serve {
			fmt.Fprintln(out, "\nThe service keeps running until Ctrl-C; look at the plate in the viewer:")
		} else {
			fmt.Fprintln(out, "\nThe service stops now (hpa demo --serve, or make demo in a terminal, keeps it and the viewer open):")
		}
		fmt.Fprintf(out, "viewer: %splates/%s  (user %s, password %s)\n", ep.ViewerURL, url.PathEscape(o.Plate), ep.AccessKey, ep.SecretKey)
		if o.Serve {
			<-ctx.Done()
		}
	}
	return stopUp()
}

func demoUploadAndWait(ctx context.Context, o DemoOptions, ep Endpoints, synthDir string, truth []labels.Target) ([]DemoResult, error) {
	store, err := objstore.Open(ctx, objstore.Config{Endpoint: ep.S3Endpoint, Region: ep.Region, PathStyle: true,
		Bucket: ep.Bucket, AccessKey: ep.AccessKey, SecretKey: ep.SecretKey})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	imgDir := filepath.Join(synthDir, "train")
	for _, row := range truth {
		for _, ch := range pipeline.ChannelNames {
			name := row.ID + "_" + ch + ".png"
			data, err := os.ReadFile(filepath.Join(imgDir, name))
			if err != nil {
				return nil, fmt.Errorf("demo: %w", err)
			}
			if err := store.Put(ctx, ep.UploadPrefix+o.Plate+"/"+name, data, "image/png"); err != nil {
				return nil, fmt.Errorf("demo: upload: %w", err)
			}
		}
	}
	deadline := time.Now().Add(o.Timeout)
	results := make([]DemoResult, len(truth))
	for i, row := range truth {
		results[i] = DemoResult{ID: row.ID, Truth: slices.Sorted(slices.Values(row.Labels))}
	}
	for {
		pending := 0
		for i := range results {
			r := &results[i]
			if r.Predicted != nil || r.Error != "" {
				continue
			}
			if b, err := store.Get(ctx, ep.LabelsPrefix+o.Plate+"/"+r.ID+".json", 1<<20); err == nil {
				l, err := labels.ParseLabel(b)
				if err != nil {
					r.Error = err.Error()
				} else {
					r.Predicted = l.PredictedIDs()
				}
				continue
			}
			if b, err := store.Get(ctx, ep.LabelsPrefix+o.Plate+"/"+r.ID+".error.json", 1<<20); err == nil {
				rec, err := labels.ParseErrorRecord(b)
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
			return nil, fmt.Errorf("demo: %d of %d samples still unlabeled after %s", pending, len(results), o.Timeout)
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
		parts[i] = fmt.Sprintf("%d %s", k, labels.ClassNames[k])
	}
	return strings.Join(parts, ", ")
}

// MacroF1 is the mean per-class F1 (eval.Score) over the classes that occur in the truth or the
// predictions of the labeled results (a class nobody has nor predicts says nothing about a plate).
func MacroF1(results []DemoResult) (f1 float64, classes int) {
	var pred, truth [][]bool
	for _, r := range results {
		if r.Error != "" {
			continue
		}
		p, t := make([]bool, labels.NumClasses), make([]bool, labels.NumClasses)
		for _, k := range r.Predicted {
			p[k] = true
		}
		for _, k := range r.Truth {
			t[k] = true
		}
		pred, truth = append(pred, p), append(truth, t)
	}
	if len(truth) == 0 {
		return 0, 0
	}
	s, err := eval.Score(pred, truth)
	if err != nil {
		return 0, 0
	}
	var sum float64
	for _, c := range s.PerClass {
		if c.TP+c.FP+c.FN == 0 {
			continue
		}
		classes++
		sum += c.F1
	}
	if classes == 0 {
		return 0, 0
	}
	return sum / float64(classes), classes
}

// PrintDemoTable prints the results sorted by sample id and the macro-F1.
func PrintDemoTable(w io.Writer, plate string, results []DemoResult) {
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
	f1, classes := MacroF1(results)
	fmt.Fprintf(w, "macro-F1 %.4f over %d classes (%d labeled, %d failed)\n", f1, classes, len(results)-failed, failed)
}
