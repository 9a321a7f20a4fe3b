package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model/ort"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

func init() {
	subcommands = append(subcommands, newLabelCmd)
}

func newLabelCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "label DIR",
		Short: "Label every sample in DIR with a model set",
		Long: `Label every complete sample ({Id}_{red,green,blue,yellow}.{png,tif,jpg}) in DIR with the
ensemble described by the model manifest. Writes OUT/<id>.json (label JSON, schema hpa.label/v1) per
labeled sample, OUT/<id>.error.json (schema hpa.error/v1) per failed or incomplete sample and a Kaggle
submission CSV (Id,Predicted; labeled samples only, sorted by Id). Exit status 1 when any sample failed or was
incomplete, 0 when all were labeled.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLabel(cmd, v, args[0])
		},
	}
	f := cmd.Flags()
	f.String("model", "", "model manifest (manifest.json of a model set)")
	f.String("out", "out", "output directory")
	f.Int("batch", 8, "samples per inference batch (each with its TTA views)")
	f.String("csv", "", "submission CSV path (default OUT/submission.csv)")
	f.Int("workers", 0, "parallel image decoders (0 = number of CPUs)")
	f.String("provider", "cpu", "ONNX Runtime execution provider: cpu, cuda or tensorrt")
	f.Int("threads", 0, "ONNX Runtime intra-op threads (0 = ONNX Runtime default)")
	f.Int("inter-threads", 0, "ONNX Runtime inter-op threads (0 = ONNX Runtime default)")
	f.String("ort-library", ort.DefaultLibrary, "path of libonnxruntime.so")
	config.BindFlags(v, cmd, "label", map[string]string{
		"provider":      "ort.provider",
		"threads":       "ort.intra_threads",
		"inter-threads": "ort.inter_threads",
		"ort-library":   "ort.library",
	})
	return cmd
}

// labelStats counts what happened to the samples of a run.
type labelStats struct {
	labeled, failed, incomplete int
}

func runLabel(cmd *cobra.Command, v *viper.Viper, dir string) error {
	stderr := cmd.ErrOrStderr()
	manifest := v.GetString("label.model")
	out := v.GetString("label.out")
	batch := v.GetInt("label.batch")
	workers := v.GetInt("label.workers")
	csvPath := v.GetString("label.csv")
	switch {
	case manifest == "":
		return errors.New("label: --model (label.model) is required")
	case out == "":
		return errors.New("label: --out (label.out) must not be empty")
	case batch < 1:
		return fmt.Errorf("label: --batch must be at least 1, not %d", batch)
	case workers < 0:
		return fmt.Errorf("label: --workers must not be negative, not %d", workers)
	}
	if workers == 0 {
		workers = runtime.NumCPU()
	}
	if csvPath == "" {
		csvPath = filepath.Join(out, "submission.csv")
	}
	complete, incomplete, err := pipeline.ScanDir(dir)
	if err != nil {
		return fmt.Errorf("label: %w", err)
	}
	if len(complete) == 0 && len(incomplete) == 0 {
		return fmt.Errorf("label: no channel images ({Id}_{red,green,blue,yellow}.png) in %s", dir)
	}
	dec, err := config.Decode(v)
	if err != nil {
		return fmt.Errorf("label: %w", err)
	}
	opt := config.Runtime(v)
	opt.MaxBatch = batch
	ens, err := ort.Load(manifest, opt)
	if err != nil {
		return fmt.Errorf("label: %w", err)
	}
	defer ens.Close()
	th, err := ens.Thresholds()
	if err != nil {
		return fmt.Errorf("label: model %s: %w", manifest, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("label: output directory: %w", err)
	}
	info := ens.Info()
	w := &labelWriter{out: out, info: info, th: th, stderr: stderr}
	if labelIsTerminal(stderr) {
		w.clear = "\r\x1b[K"
	}
	var stats labelStats

	for _, inc := range incomplete {
		missing := make([]string, len(inc.Missing))
		for i, c := range inc.Missing {
			missing[i] = c.String()
		}
		reason := "missing channels: " + strings.Join(missing, ", ")
		fmt.Fprintf(stderr, "incomplete %s: %s\n", inc.ID, reason)
		rec := labels.ErrorRecord{Schema: labels.ErrorSchema, SampleID: inc.ID, Kind: string(pipeline.KindMissingChannel), Reason: reason, Model: &info}
		if err := w.writeError(rec); err != nil {
			return err
		}
		stats.incomplete++
	}

	prog := newLabelProgress(stderr, len(complete))
	done := make(chan struct{})
	defer close(done) // stops the loader if we return early
	for b := range labelLoadBatches(done, complete, batch, workers, dec) {
		var imgs []pipeline.Image4
		var srcs [][]labels.Source
		for _, s := range b {
			if s.err != nil {
				if err := w.fail(s.id, s.err); err != nil {
					return err
				}
				stats.failed++
				continue
			}
			imgs = append(imgs, s.img)
			srcs = append(srcs, s.sources)
		}
		probs, err := ens.Predict(imgs)
		if err != nil && len(imgs) > 1 {
			// Isolate the sample(s) at fault: run them one by one.
			probs = make([][]float64, len(imgs))
			for i := range imgs {
				p, err := ens.Predict(imgs[i : i+1])
				if err != nil {
					if err := w.fail(imgs[i].ID, err); err != nil {
						return err
					}
					stats.failed++
					continue
				}
				probs[i] = p[0]
			}
		} else if err != nil {
			if err := w.fail(imgs[0].ID, err); err != nil {
				return err
			}
			stats.failed++
			probs = [][]float64{nil}
		}
		for i, p := range probs {
			if p == nil {
				continue
			}
			if err := w.writeLabel(imgs[i].ID, srcs[i], p); err != nil {
				var le *labels.DocumentError
				if !errors.As(err, &le) {
					return err
				}
				if err := w.fail(imgs[i].ID, err); err != nil {
					return err
				}
				stats.failed++
				continue
			}
			stats.labeled++
		}
		prog.add(len(b))
	}
	prog.finish()

	if err := w.writeSubmission(csvPath); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "labeled %d of %d samples (%d failed, %d incomplete); labels in %s, submission %s\n",
		stats.labeled, len(complete)+len(incomplete), stats.failed, stats.incomplete, out, csvPath)
	if stats.failed > 0 || stats.incomplete > 0 {
		return &exitError{code: 1, err: fmt.Errorf("label: %d samples failed and %d were incomplete (see the .error.json files in %s)", stats.failed, stats.incomplete, out)}
	}
	return nil
}

// labelLoaded is one decoded sample (or the reason it could not be).
type labelLoaded struct {
	id      string
	img     pipeline.Image4
	sources []labels.Source
	err     error
}

// labelLoadBatches decodes the samples batch by batch, in order, with workers goroutines per batch, one
// batch ahead of the consumer. Batches are consecutive runs of the (sorted) sample list, so the
// same input always gives the same batches. Closing done stops it.
func labelLoadBatches(done <-chan struct{}, samples []pipeline.SampleFiles, size, workers int, dec pipeline.DecodeOptions) <-chan []labelLoaded {
	ch := make(chan []labelLoaded, 1)
	go func() {
		defer close(ch)
		for start := 0; start < len(samples); start += size {
			part := samples[start:min(start+size, len(samples))]
			res := make([]labelLoaded, len(part))
			jobs := make(chan int)
			var wg sync.WaitGroup
			for g := 0; g < min(workers, len(part)); g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range jobs {
						res[i] = labelLoadOne(part[i], dec)
					}
				}()
			}
			for i := range part {
				jobs <- i
			}
			close(jobs)
			wg.Wait()
			select {
			case ch <- res:
			case <-done:
				return
			}
		}
	}()
	return ch
}

func labelLoadOne(s pipeline.SampleFiles, dec pipeline.DecodeOptions) labelLoaded {
	l := labelLoaded{id: s.ID}
	for c, f := range s.Files {
		src, err := labels.DescribeFile(pipeline.Channel(c), f)
		if err != nil {
			l.err = err
			return l
		}
		l.sources = append(l.sources, src)
	}
	l.img, l.err = pipeline.LoadSample(s.ID, s.Files, dec)
	return l
}

// labelWriter writes the per-sample documents and remembers the submission rows.
type labelWriter struct {
	out    string
	info   labels.ModelInfo
	th     labels.Thresholds
	stderr io.Writer
	clear  string // erases the progress line before a message on a terminal
	rows   []labels.SubmissionRow
}

func (w *labelWriter) writeLabel(id string, sources []labels.Source, probs []float64) error {
	l, err := labels.NewLabel(id, sources, w.info, w.th, probs)
	if err != nil {
		return err
	}
	b, err := labels.MarshalLabel(l)
	if err != nil {
		return err
	}
	if err := labelWriteFile(filepath.Join(w.out, id+".json"), b); err != nil {
		return err
	}
	// A stale error document from an earlier run would contradict the label.
	if err := labelRemoveStale(filepath.Join(w.out, id+".error.json")); err != nil {
		return err
	}
	w.rows = append(w.rows, labels.SubmissionRow{ID: id, Predicted: l.PredictedIDs()})
	return nil
}

// fail records a failed sample: an error document and a line on stderr.
func (w *labelWriter) fail(id string, cause error) error {
	rec := labels.NewErrorRecord(id, cause, &w.info)
	what := rec.Kind
	if rec.File != "" {
		what = rec.File + ": " + rec.Kind
	}
	fmt.Fprintf(w.stderr, "%sfailed %s: %s: %s\n", w.clear, id, what, rec.Reason)
	return w.writeError(rec)
}

func (w *labelWriter) writeError(rec labels.ErrorRecord) error {
	b, err := labels.MarshalError(rec)
	if err != nil {
		return err
	}
	if err := labelWriteFile(filepath.Join(w.out, rec.SampleID+".error.json"), b); err != nil {
		return err
	}
	return labelRemoveStale(filepath.Join(w.out, rec.SampleID+".json"))
}

func (w *labelWriter) writeSubmission(path string) error {
	var buf bytes.Buffer
	if err := labels.WriteSubmission(&buf, w.rows); err != nil {
		return fmt.Errorf("label: submission: %w", err)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("label: submission: %w", err)
		}
	}
	return labelWriteFile(path, buf.Bytes())
}

func labelWriteFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("label: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("label: write %s: %w", path, err)
	}
	return nil
}

func labelRemoveStale(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("label: remove stale %s: %w", path, err)
	}
	return nil
}

// labelProgress shows count, rate and ETA on stderr: one self-overwriting line on a terminal, plain lines
// (at most one every two seconds, plus the last) otherwise.
type labelProgress struct {
	w          io.Writer
	tty        bool
	total      int
	done       int
	start      time.Time
	lastPrint  time.Time
	printedAny bool
}

func newLabelProgress(w io.Writer, total int) *labelProgress {
	return &labelProgress{w: w, tty: labelIsTerminal(w), total: total, start: time.Now()}
}

func labelIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *labelProgress) line() string {
	el := time.Since(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(p.done) / el
	}
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(p.total-p.done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("label: %d/%d samples, %.2f samples/s, ETA %s", p.done, p.total, rate, eta)
}

func (p *labelProgress) add(n int) {
	p.done += n
	now := time.Now()
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", p.line())
		p.printedAny = true
		return
	}
	if p.done == p.total || now.Sub(p.lastPrint) >= 2*time.Second {
		fmt.Fprintln(p.w, p.line())
		p.lastPrint = now
	}
}

func (p *labelProgress) finish() {
	if p.tty && p.printedAny {
		fmt.Fprintln(p.w)
	}
}
