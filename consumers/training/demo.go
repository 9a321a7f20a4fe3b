package training

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/local"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/runs"
	"github.com/hpa-plates/hpa/internal/synth"
)

// RetrainDemoOptions configure RetrainDemo (`hpa demo --retrain`).
type RetrainDemoOptions struct {
	Demo local.DemoOptions
	// TrainSamples is the size of the labeled set uploaded for the run (32 px images).
	TrainSamples int
	// Config is the training section the coordinator of start runs with (for Status).
	Config Config
}

// RetrainDemo shows the training loop on one machine: it starts the service of start (inference
// plus the training consumer), uploads a labeled set (images and a label file), follows the run
// fold by fold, prints the promotion decision, then uploads a plate and shows its labels with the
// model version that made them.
func RetrainDemo(ctx context.Context, o RetrainDemoOptions, out io.Writer, start local.Factory) error {
	d := o.Demo
	began := time.Now()
	trainDir := filepath.Join(d.Up.Stack.DataDir, fmt.Sprintf("retrain-%d-%d", d.Seed, o.TrainSamples))
	if _, err := synth.Generate(ctx, synth.Options{Out: trainDir, Samples: o.TrainSamples, Size: 32, Seed: d.Seed + 1000}); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	plateDir := filepath.Join(d.Up.Stack.DataDir, fmt.Sprintf("synth-%d-%d-%d", d.Seed, d.Samples, d.Size))
	if _, err := synth.Generate(ctx, synth.Options{Out: plateDir, Samples: d.Samples, Size: d.Size, Seed: d.Seed}); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	upCtx, cancelUp := context.WithCancel(ctx)
	defer cancelUp()
	ready := make(chan local.Endpoints, 1)
	upErr := make(chan error, 1)
	go func() { upErr <- local.Up(upCtx, d.Up, out, start, ready) }()
	var ep local.Endpoints
	select {
	case ep = <-ready:
	case err := <-upErr:
		return err
	}
	stopUp := func() error {
		cancelUp()
		return <-upErr
	}
	err := retrainSteps(ctx, o, ep, out, trainDir, plateDir, began)
	if serr := stopUp(); err == nil {
		err = serr
	}
	return err
}

func retrainSteps(ctx context.Context, o RetrainDemoOptions, ep local.Endpoints, out io.Writer, trainDir, plateDir string, began time.Time) error {
	s3cfg := objstore.Config{Endpoint: ep.S3Endpoint, Region: ep.Region, PathStyle: true, Bucket: ep.Bucket, AccessKey: ep.AccessKey, SecretKey: ep.SecretKey}
	conn, err := Dial(ctx, bus.Config{URL: ep.NATSURL, User: ep.NATSUser, Password: ep.NATSPassword}, s3cfg, "hpa-demo-retrain", nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	cfg := o.Config
	cfg.fill()
	before, _ := Status(ctx, conn, cfg, 0)
	oldVersion := before.Current.Version
	truth, err := labels.ReadTargetsFile(filepath.Join(plateDir, "train.csv"))
	if err != nil {
		return err
	}
	// 0. A plate labeled by the model served now.
	first := o.Demo.Plate + "-before"
	if _, err := uploadDir(ctx, conn.Store, filepath.Join(plateDir, "train"), ep.UploadPrefix+first+"/"); err != nil {
		return err
	}
	_, versions, err := waitLabels(ctx, conn.Store, ep.LabelsPrefix+first+"/", truth, "", began, o.Demo.Timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n0. plate %s (%d samples) labeled by %v\n", first, len(truth), versions)
	// 1. The labeled set: images, then the label file.
	n, err := uploadDir(ctx, conn.Store, filepath.Join(trainDir, "train"), cfg.ImagesPrefix)
	if err != nil {
		return err
	}
	csv, err := os.ReadFile(filepath.Join(trainDir, "train.csv"))
	if err != nil {
		return err
	}
	key := cfg.LabelsPrefix + "demo-" + time.Now().UTC().Format("20060102T150405") + ".csv"
	if err := conn.Store.Put(ctx, key, csv, "text/csv"); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n1. uploaded %d labeled samples (%d images) and s3://%s/%s\n", o.TrainSamples, n, ep.Bucket, key)
	fmt.Fprintf(out, "2. the coordinator starts a run after %s without new label files; the worker trains %d folds:\n", cfg.Quiet, cfg.Settings.Folds)
	// 2. Follow the run until it is decided.
	var runID, lastLine string
	for {
		st, err := Status(ctx, conn, cfg, 1)
		if err != nil {
			return err
		}
		r := st.Active
		if r == nil && st.LastRun != nil && (runID == st.LastRun.ID || (runID == "" && st.LastRun.Created.After(began))) {
			r = st.LastRun
		}
		if r != nil {
			runID = r.ID
			var b strings.Builder
			fmt.Fprintf(&b, "   run %s: %s", r.ID, r.State)
			for _, f := range r.Folds {
				fmt.Fprintf(&b, "  fold %d %s", f.Fold, f.State)
				if f.State == runs.FoldRunning && f.Epochs > 0 {
					fmt.Fprintf(&b, " %d/%d", f.Epoch, f.Epochs)
				}
			}
			if line := b.String(); line != lastLine {
				fmt.Fprintln(out, line)
				lastLine = line
			}
			if r.State == runs.RunFailed {
				return fmt.Errorf("demo: run %s failed: %s", r.ID, r.Error)
			}
			if r.State == runs.RunDone {
				for _, dd := range st.Decisions {
					if dd.RunID == r.ID {
						fmt.Fprintf(out, "3. decision: %s %s (%s)\n", dd.Action, dd.Version, dd.Reason)
					}
				}
				break
			}
		}
		if time.Since(began) > o.Demo.Timeout {
			return fmt.Errorf("demo: no decision after %s", o.Demo.Timeout)
		}
		select {
		case <-ctx.Done():
			return errors.New("demo: interrupted")
		case <-time.After(500 * time.Millisecond):
		}
	}
	after, err := Status(ctx, conn, cfg, 1)
	if err != nil {
		return err
	}
	newVersion := after.Current.Version
	if newVersion != oldVersion && ep.MetricsURL != "" {
		// Wait until the consumer serves it (its model-info metric names the version).
		for i := 0; i < 100 && !serving(ctx, ep.MetricsURL, newVersion); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if newVersion != oldVersion && cfg.Relabel {
		// 4. The replay producer relabels what older versions labeled.
		if _, versions, err = waitLabels(ctx, conn.Store, ep.LabelsPrefix+first+"/", truth, newVersion, began, o.Demo.Timeout); err != nil {
			return err
		}
		fmt.Fprintf(out, "4. plate %s relabeled after the promotion: %v\n", first, versions)
	}
	// 5. The next plate.
	plate := o.Demo.Plate + "-retrained"
	if _, err := uploadDir(ctx, conn.Store, filepath.Join(plateDir, "train"), ep.UploadPrefix+plate+"/"); err != nil {
		return err
	}
	fmt.Fprintf(out, "5. uploaded plate %s (%d samples); labels:\n", plate, len(truth))
	results, versions, err := waitLabels(ctx, conn.Store, ep.LabelsPrefix+plate+"/", truth, "", began, o.Demo.Timeout)
	if err != nil {
		return err
	}
	local.PrintDemoTable(out, plate, results)
	fmt.Fprintf(out, "model versions of the labels: %v (current model %s, before the run %q)\n", versions, newVersion, oldVersion)
	fmt.Fprintf(out, "whole loop in %s\n", time.Since(began).Round(time.Second))
	return nil
}

func serving(ctx context.Context, metricsURL, version string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return strings.Contains(string(b), `version="`+version+`"`)
}

// uploadDir puts every channel image of dir below prefix.
func uploadDir(ctx context.Context, store *objstore.Bucket, dir, prefix string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if _, _, _, ok := pipeline.ParseName(e.Name()); !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return n, err
		}
		if err := store.Put(ctx, prefix+e.Name(), b, "image/png"); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// waitLabels waits for the label of every sample below prefix (of model version want, when set)
// and returns the rows and the count of labels per model version.
func waitLabels(ctx context.Context, store *objstore.Bucket, prefix string, truth []labels.Target, want string, began time.Time, timeout time.Duration) ([]local.DemoResult, map[string]int, error) {
	results := make([]local.DemoResult, len(truth))
	versions := map[string]int{}
	for i, row := range truth {
		results[i] = local.DemoResult{ID: row.ID, Truth: slices.Sorted(slices.Values(row.Labels))}
		for {
			if b, err := store.Get(ctx, prefix+row.ID+".json", 1<<20); err == nil {
				l, err := labels.ParseLabel(b)
				if err != nil {
					results[i].Error = err.Error()
					break
				}
				if want == "" || l.Model.Version == want {
					results[i].Predicted = l.PredictedIDs()
					versions[l.Model.Version]++
					break
				}
			}
			if time.Since(began) > timeout {
				return nil, nil, fmt.Errorf("demo: sample %s of %s not labeled (by %q) after %s", row.ID, prefix, want, timeout)
			}
			select {
			case <-ctx.Done():
				return nil, nil, errors.New("demo: interrupted")
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return results, versions, nil
}
