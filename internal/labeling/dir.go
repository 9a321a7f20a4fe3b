package labeling

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/serve"
)

// DirInput hands out the complete samples of a directory ({Id}_{red,green,blue,yellow}.{png,tif,jpg}),
// sorted by id; Incomplete lists the ids lacking channels. Its AckFunc counts outcomes in Stats.
type DirInput struct {
	Dir        string
	Incomplete []pipeline.Incomplete
	Stats      Stats

	mu       sync.Mutex
	complete []pipeline.SampleFiles
	next     int
}

// Stats count what happened to the samples of a directory run.
type Stats struct {
	Labeled, Failed, Incomplete int
}

// ErrNoSamples is returned by NewDirInput for a directory without channel images.
var ErrNoSamples = errors.New("no channel images ({Id}_{red,green,blue,yellow}.png)")

// NewDirInput scans dir (pipeline.ScanDir).
func NewDirInput(dir string) (*DirInput, error) {
	complete, incomplete, err := pipeline.ScanDir(dir)
	if err != nil {
		return nil, err
	}
	if len(complete) == 0 && len(incomplete) == 0 {
		return nil, fmt.Errorf("%w in %s", ErrNoSamples, dir)
	}
	return &DirInput{Dir: dir, Incomplete: incomplete, complete: complete}, nil
}

// Len is the number of complete samples.
func (d *DirInput) Len() int { return len(d.complete) }

// Read implements Input: every sample once (Final: a directory is read once), then ErrEndOfInput.
func (d *DirInput) Read(ctx context.Context) (Message, AckFunc, error) {
	if err := ctx.Err(); err != nil {
		return Message{}, nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.next == len(d.complete) {
		return Message{}, nil, ErrEndOfInput
	}
	s := d.complete[d.next]
	d.next++
	return Message{Sample: Sample{ID: s.ID, Keys: s.Files}, Attempt: 1, Final: true}, d.ack, nil
}

func (d *DirInput) ack(_ context.Context, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var f *Failed
	switch {
	case err == nil:
		d.Stats.Labeled++
	case errors.As(err, &f):
		d.Stats.Failed++
	}
}

// DirOptions configure LabelDir.
type DirOptions struct {
	// Out receives <id>.json and <id>.error.json; CSV is the submission path (default
	// <Out>/submission.csv).
	Out, CSV string
	// Batch is the samples per model run; Workers the parallel decoders of a batch.
	Batch, Workers int
	Decode         pipeline.DecodeOptions
	// Stderr receives progress, one line per failed sample and the summary.
	Stderr io.Writer
}

// SamplesFailedError is returned by LabelDir when some samples failed or were incomplete; the
// others are labeled.
type SamplesFailedError struct {
	Stats
	Out string
}

func (e *SamplesFailedError) Error() string {
	return fmt.Sprintf("label: %d samples failed and %d were incomplete (see the .error.json files in %s)", e.Failed, e.Incomplete, e.Out)
}

// LabelDir labels every sample of in with the model set at location (loaded by load once the
// directory is known to hold samples): DirInput -> Assemble (Workers at a time, a batch ahead)
// -> Predict (batches of consecutive samples, so the same input always gives the same batches)
// -> Label or Failure -> labels.DirSink, then the Kaggle submission of the labeled samples. A
// sink failure stops the run.
func LabelDir(ctx context.Context, in *DirInput, o DirOptions, load model.Loader, location string) (Stats, error) {
	if o.CSV == "" {
		o.CSV = filepath.Join(o.Out, "submission.csv")
	}
	pred, closer, err := load(ctx, location)
	if err != nil {
		return Stats{}, fmt.Errorf("label: %w", err)
	}
	defer closer.Close()
	sink := labels.DirSink{Dir: o.Out}
	if err := mkdir(o.Out); err != nil {
		return Stats{}, err
	}
	info, th := pred.Info(), pred.Thresholds()
	clear := ""
	if serve.IsTerminal(o.Stderr) {
		clear = "\r\x1b[K"
	}
	fail := func(ctx context.Context, id string, cause error) error {
		rec := Failure(id, cause, &info, false)
		what := rec.Kind
		if rec.File != "" {
			what = rec.File + ": " + rec.Kind
		}
		fmt.Fprintf(o.Stderr, "%sfailed %s: %s: %s\n", clear, id, what, rec.Reason)
		b, err := labels.MarshalError(rec)
		if err != nil {
			return err
		}
		return sink.WriteError(ctx, labels.Ref{ID: id}, b)
	}

	for _, inc := range in.Incomplete {
		missing := make([]string, len(inc.Missing))
		for i, c := range inc.Missing {
			missing[i] = c.String()
		}
		reason := "missing channels: " + strings.Join(missing, ", ")
		fmt.Fprintf(o.Stderr, "incomplete %s: %s\n", inc.ID, reason)
		rec := labels.ErrorRecord{Schema: labels.ErrorSchema, SampleID: inc.ID, Kind: string(pipeline.KindMissingChannel), Reason: reason, Model: &info}
		b, err := labels.MarshalError(rec)
		if err == nil {
			err = sink.WriteError(ctx, labels.Ref{ID: inc.ID}, b)
		}
		if err != nil {
			return in.Stats, err
		}
		in.Stats.Incomplete++
	}

	var rows []labels.SubmissionRow
	prog := NewProgress(o.Stderr, "label", in.Len())
	done := make(chan struct{})
	defer close(done) // stops the loader if we return early
	for b := range loadBatches(ctx, done, in, o) {
		var imgs []pipeline.Image4
		var live []loaded
		for _, s := range b {
			if s.err != nil {
				if err := fail(ctx, s.msg.Sample.ID, s.err); err != nil {
					return in.Stats, err
				}
				s.ack(ctx, &Failed{Err: s.err})
				continue
			}
			imgs = append(imgs, s.a.Image)
			live = append(live, s)
		}
		probs, errs, _ := Predict(ctx, pred, imgs)
		for i, s := range live {
			id := s.msg.Sample.ID
			if errs[i] != nil {
				if err := fail(ctx, id, errs[i]); err != nil {
					return in.Stats, err
				}
				s.ack(ctx, &Failed{Err: errs[i]})
				continue
			}
			l, doc, err := Label(id, s.a.Sources, info, th, probs[i])
			if err != nil {
				if err := fail(ctx, id, err); err != nil {
					return in.Stats, err
				}
				s.ack(ctx, &Failed{Err: err})
				continue
			}
			if err := sink.WriteLabel(ctx, labels.Ref{ID: id}, doc); err != nil {
				return in.Stats, err
			}
			rows = append(rows, labels.SubmissionRow{ID: id, Predicted: l.PredictedIDs()})
			s.ack(ctx, nil)
		}
		prog.Add(len(b))
	}
	prog.Finish()
	if err := ctx.Err(); err != nil {
		return in.Stats, err
	}
	if err := labels.WriteSubmissionFile(o.CSV, rows); err != nil {
		return in.Stats, err
	}
	st := in.Stats
	fmt.Fprintf(o.Stderr, "labeled %d of %d samples (%d failed, %d incomplete); labels in %s, submission %s\n",
		st.Labeled, in.Len()+len(in.Incomplete), st.Failed, st.Incomplete, o.Out, o.CSV)
	if st.Failed > 0 || st.Incomplete > 0 {
		return st, &SamplesFailedError{Stats: st, Out: o.Out}
	}
	return st, nil
}

// loaded is one assembled sample (or the reason it could not be) with its message.
type loaded struct {
	msg Message
	ack AckFunc
	a   Assembled
	err error
}

// loadBatches reads the input batch by batch, assembling each batch with o.Workers goroutines,
// one batch ahead of the consumer. Closing done stops it.
func loadBatches(ctx context.Context, done <-chan struct{}, in Input, o DirOptions) <-chan []loaded {
	ch := make(chan []loaded, 1)
	go func() {
		defer close(ch)
		for {
			var part []loaded
			for len(part) < o.Batch {
				msg, ack, err := in.Read(ctx)
				if err != nil {
					break
				}
				part = append(part, loaded{msg: msg, ack: ack})
			}
			if len(part) == 0 {
				return
			}
			jobs := make(chan int)
			var wg sync.WaitGroup
			for g := 0; g < min(o.Workers, len(part)); g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range jobs {
						part[i].a, part[i].err = Assemble(ctx, DirFetcher{}, part[i].msg.Sample, o.Decode)
					}
				}()
			}
			for i := range part {
				jobs <- i
			}
			close(jobs)
			wg.Wait()
			select {
			case ch <- part:
			case <-done:
				return
			}
		}
	}()
	return ch
}

// Progress shows count, rate and ETA: one self-overwriting line on a terminal, plain lines (at most
// one every two seconds, plus the last) otherwise.
type Progress struct {
	w          io.Writer
	what       string
	tty        bool
	total      int
	done       int
	start      time.Time
	lastPrint  time.Time
	printedAny bool
}

// NewProgress starts counting total items under the name what.
func NewProgress(w io.Writer, what string, total int) *Progress {
	return &Progress{w: w, what: what, tty: serve.IsTerminal(w), total: total, start: time.Now()}
}

func (p *Progress) line() string {
	el := time.Since(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(p.done) / el
	}
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(p.total-p.done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%s: %d/%d samples, %.2f samples/s, ETA %s", p.what, p.done, p.total, rate, eta)
}

// Add counts n more items.
func (p *Progress) Add(n int) {
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

// Finish ends the terminal line.
func (p *Progress) Finish() {
	if p.tty && p.printedAny {
		fmt.Fprintln(p.w)
	}
}

func mkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("label: output directory: %w", err)
	}
	return nil
}
