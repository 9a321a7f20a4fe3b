package replay

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/hpa-plates/hpa/internal/bus"
)

// checkpoint is the KV value of a replay's progress.
type checkpoint struct {
	// Args describes the replay (the key is a hash of it).
	Args string `json:"args"`
	// Run identifies this replay's messages (Nats-Msg-Id) across its resumed runs.
	Run string `json:"run"`
	// Pos is where a resumed run starts: the listing continues after this key; a stream replay
	// after this sequence.
	Pos string `json:"pos"`
	// Done are the samples (plate/id) already handled beyond Pos (interleaved sample ids only).
	Done     []string  `json:"done,omitempty"`
	Counts   Summary   `json:"counts"`
	Finished bool      `json:"finished"`
	Updated  time.Time `json:"updated"`
}

// runner holds what the replay modes share: the JetStream context, the checkpoint, the rate
// limiter and the asynchronous publisher.
type runner struct {
	o     *Options
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	key   string
	cp    checkpoint
	sum   Summary
	start time.Time
	lim   *rate.Limiter
	prog  *progress

	pending   []pendingPub
	lastFlush time.Time
	published int64 // this run, for crashAfter
}

type pendingPub struct {
	fut jetstream.PubAckFuture
	msg *nats.Msg
}

// args is the description of a replay that names its checkpoint: two replays with the same args
// are the same replay (a restart continues it).
func (o *Options) args() string {
	mode := "inventory"
	if o.Stream {
		mode = "stream"
	} else if o.Reconcile {
		mode = "reconcile"
	}
	t := func(x time.Time) string {
		if x.IsZero() {
			return "-"
		}
		return x.UTC().Format(time.RFC3339Nano)
	}
	src := o.Source
	if o.Stream {
		src = o.Topology.EventsStream
	}
	minAge := ""
	if o.MinAge > 0 {
		minAge = " minage=" + o.MinAge.String()
	}
	return fmt.Sprintf("%s %s since=%s until=%s%s force=%v model=%s upload=%s labels=%s pattern=%s subjects=%v",
		mode, src, t(o.Since), t(o.Until), minAge, o.Force, o.ModelDigest, o.UploadPrefix, o.LabelsPrefix, o.KeyPattern, o.Topology.ReplaySubjects)
}

func (o *Options) mode() string {
	switch {
	case o.Stream:
		return "stream"
	case o.Reconcile:
		return "reconcile"
	}
	return "inventory"
}

func newRunner(ctx context.Context, o *Options) (*runner, error) {
	js, err := jetstream.New(o.NC, jetstream.WithPublishAsyncMaxPending(o.MaxPending))
	if err != nil {
		return nil, fmt.Errorf("replay: jetstream: %w", err)
	}
	r := &runner{o: o, js: js, start: time.Now(), lastFlush: time.Now()}
	r.sum.Mode, r.sum.DryRun = o.mode(), o.DryRun
	if o.Rate > 0 {
		r.lim = rate.NewLimiter(rate.Limit(o.Rate), max(4, int(o.Rate/10)))
	}
	args := o.args()
	h := sha256.Sum256([]byte(args))
	r.key = "r-" + hex.EncodeToString(h[:12])
	r.cp = checkpoint{Args: args, Run: newRunID()}
	if o.DryRun {
		return r, nil
	}
	if err := bus.EnsureReplayStreams(ctx, js, o.Topology, 2*time.Minute); bus.IsSubjectOverlap(err) {
		o.Logger.Warn("the replay subjects are captured by another stream (the events stream?): replayed events go there, without priority", "err", err)
	} else if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	r.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.ReplayBucket, Description: "hpa replay progress"})
	if err != nil {
		return nil, fmt.Errorf("replay: kv bucket %s: %w", bus.ReplayBucket, err)
	}
	e, err := r.kv.Get(ctx, r.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("replay: checkpoint %s: %w", r.key, err)
	default:
		var old checkpoint
		if json.Unmarshal(e.Value(), &old) == nil && old.Args == args {
			switch {
			case old.Finished:
				o.Logger.Info("a replay with these arguments finished before; starting it again", "finished", old.Updated, "checkpoint", r.key)
			case o.Restart:
				o.Logger.Info("unfinished replay with these arguments ignored (--restart)", "checkpoint", r.key, "at", old.Pos)
			default:
				r.cp = old
				r.sum = old.Counts
				r.sum.Mode, r.sum.DryRun, r.sum.Resumed = o.mode(), false, true
				o.Logger.Info("resuming replay", "checkpoint", r.key, "after", old.Pos, "published", old.Counts.Published)
			}
		}
	}
	return r, nil
}

func newRunID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// msgID is the Nats-Msg-Id of a replayed sample or event: the run (shared by resumed runs) and
// what is published.
func (r *runner) msgID(what string) string { return "replay:" + r.cp.Run + ":" + what }

// publish queues msg (asynchronously; flush collects the acknowledgements), after the rate
// limiter let n objects through.
func (r *runner) publish(ctx context.Context, msg *nats.Msg, n int) error {
	if r.o.DryRun {
		r.sum.Published++
		return nil
	}
	if r.lim != nil {
		if err := r.lim.WaitN(ctx, min(n, r.lim.Burst())); err != nil {
			return err
		}
	}
	fut, err := r.js.PublishMsgAsync(msg)
	if err != nil {
		// The async window is full or the connection is down: settle what is pending first.
		if ferr := r.settle(ctx); ferr != nil {
			return ferr
		}
		if fut, err = r.js.PublishMsgAsync(msg); err != nil {
			return fmt.Errorf("replay: publish %s: %w", msg.Subject, err)
		}
	}
	r.pending = append(r.pending, pendingPub{fut, msg})
	r.published++
	if r.o.crashAfter > 0 && r.published >= r.o.crashAfter {
		_ = r.settle(ctx)
		return errCrashed
	}
	return nil
}

// settle waits for the acknowledgement of every pending publish; a failed one is published again
// synchronously (a few attempts, with the same Nats-Msg-Id, so a publish that did arrive is not
// doubled).
func (r *runner) settle(ctx context.Context) error {
	if len(r.pending) == 0 {
		return nil
	}
	select {
	case <-r.js.PublishAsyncComplete():
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
	}
	for _, p := range r.pending {
		var ack *jetstream.PubAck
		var err error
		select {
		case ack = <-p.fut.Ok():
		case err = <-p.fut.Err():
		default:
			err = errors.New("no acknowledgement")
		}
		for attempt := 0; err != nil; attempt++ {
			if attempt == 5 {
				return fmt.Errorf("replay: publish %s (%s): %w", p.msg.Subject, p.msg.Header.Get(jetstream.MsgIDHeader), err)
			}
			r.o.Logger.Warn("replay publish failed, retrying", "subject", p.msg.Subject, "err", err)
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			ack, err = r.js.PublishMsg(pctx, p.msg)
			cancel()
			if err != nil {
				time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
			}
		}
		if ack.Duplicate {
			r.sum.Duplicates++
		} else {
			r.sum.Published++
		}
	}
	r.pending = r.pending[:0]
	return nil
}

// maybeCheckpoint checkpoints when CheckpointEvery has passed.
func (r *runner) maybeCheckpoint(ctx context.Context, pos string, done []string) error {
	if time.Since(r.lastFlush) < r.o.CheckpointEvery {
		return nil
	}
	return r.checkpoint(ctx, pos, done, false)
}

// checkpoint settles pending publishes and records the position: everything up to pos (and the
// samples of done) is published.
func (r *runner) checkpoint(ctx context.Context, pos string, done []string, finished bool) error {
	r.lastFlush = time.Now()
	if err := r.settle(ctx); err != nil {
		return err
	}
	r.sum.Elapsed = time.Since(r.start)
	if r.prog != nil {
		r.prog.update(r.sum)
	}
	if r.o.DryRun {
		return nil
	}
	r.cp.Pos, r.cp.Done, r.cp.Counts, r.cp.Finished, r.cp.Updated = pos, done, r.sum, finished, time.Now().UTC()
	b, _ := json.Marshal(&r.cp)
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := r.kv.Put(kctx, r.key, b); err != nil {
		return fmt.Errorf("replay: checkpoint %s: %w", r.key, err)
	}
	if r.o.OnCheckpoint != nil {
		r.o.OnCheckpoint(r.sum)
	}
	return nil
}
