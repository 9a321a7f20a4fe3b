package replay

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows a replay's progress: a bar with rate and ETA on a terminal (the total comes from
// a counting listing run beside the replay), structured log lines every few seconds otherwise.
type progress struct {
	bar     *progressbar.ProgressBar
	log     *slog.Logger
	every   time.Duration
	mu      sync.Mutex
	lastLog time.Time
	start   time.Time
	cancel  context.CancelFunc
}

// startProgress starts the display chosen by o; count, when the bar is shown, counts the objects
// to go (run in the background; the bar has no ETA until it returns).
func startProgress(ctx context.Context, o *Options, count func(context.Context) (int64, error)) *progress {
	mode := o.Progress
	if mode == ProgressAuto {
		mode = ProgressLog
		if f, ok := o.Out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = ProgressBar
		}
	}
	every := o.ProgressEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	p := &progress{log: o.Logger, every: every, start: time.Now(), lastLog: time.Now()}
	switch mode {
	case ProgressOff:
		return nil
	case ProgressBar:
		p.bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(o.Out), progressbar.OptionSetDescription("replay"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("objects"),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetPredictTime(true),
			progressbar.OptionFullWidth(), progressbar.OptionClearOnFinish())
		if count != nil {
			cctx, cancel := context.WithCancel(ctx)
			p.cancel = cancel
			go func() {
				if n, err := count(cctx); err == nil {
					p.mu.Lock()
					p.bar.ChangeMax64(n)
					p.mu.Unlock()
				}
			}()
		}
	}
	return p
}

// tick reports the objects listed so far.
func (p *progress) tick(s Summary, listed int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Set64(listed)
		return
	}
	if time.Since(p.lastLog) >= p.every {
		p.lastLog = time.Now()
		el := time.Since(p.start).Seconds()
		p.log.Info("replay progress", "listed", listed, "samples", s.Samples, "published", s.Published,
			"up_to_date", s.UpToDate, "errors", s.Errors, "objects_per_s", int64(float64(listed)/max(el, 1e-3)))
	}
}

// update reports checkpointed counts.
func (p *progress) update(s Summary) {
	if p == nil || p.bar == nil {
		return
	}
	p.mu.Lock()
	p.bar.Describe("replay: " + itoa(s.Published) + " published")
	p.mu.Unlock()
}

func (p *progress) finish(s Summary) {
	if p == nil {
		return
	}
	p.stop()
	if p.bar != nil {
		p.mu.Lock()
		_ = p.bar.Finish()
		p.mu.Unlock()
	}
}

func (p *progress) stop() {
	if p != nil && p.cancel != nil {
		p.cancel()
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
