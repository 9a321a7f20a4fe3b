// Package replay is the backfill producer (`hpa replay`): it publishes S3 object events again, on
// the replay subject (bus.ReplaySubjectPrefix.<bucket>, stream bus.ReplayStream) apart from live
// uploads, so that the inference consumer labels old plates, or every plate again after a model
// promotion, without ever queueing live work behind a backfill.
//
// Three sources:
//   - an inventory (Options.Source s3://bucket/prefix): the bucket is listed a page at a time
//     (memory does not grow with the listing), the channel objects of each sample are grouped and
//     each complete sample is published as one notification of its four records. By default only
//     stale samples are (no label, a label older than a channel, or a label of another model
//     digest than Options.ModelDigest); Force publishes every one.
//   - the events stream (Options.Stream): the stored events from Options.Since on (JetStream
//     start-time delivery) are published again on the replay subject.
//   - a reconciliation (Options.Reconcile): samples whose four channels are in S3 but that have
//     neither a label nor an error record (e.g. all their events were lost) are published.
//
// A replay is resumable: its position (the last listed key or stream sequence, and its counts)
// is checkpointed in the KV bucket bus.ReplayBucket under a key derived from its arguments, and
// every message carries a Nats-Msg-Id of the run and the sample, so a replay killed and started
// again with the same arguments continues where it stopped and queues no sample twice.
package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/objstore"
)

// Store is what a replay reads from the bucket: a resumable listing and label documents.
// *objstore.Bucket implements it.
type Store interface {
	ObjectsAfter(ctx context.Context, prefix, startAfter string) iter.Seq2[objstore.ObjectInfo, error]
	Get(ctx context.Context, key string, max int64) ([]byte, error)
}

// Progress selects how progress is shown.
type Progress string

const (
	// ProgressAuto draws a bar when Options.Out is a terminal and logs otherwise.
	ProgressAuto Progress = "auto"
	ProgressBar  Progress = "bar"
	ProgressLog  Progress = "log"
	ProgressOff  Progress = "off"
)

// Options configure a replay. NC and, except for Stream, Store and Source are required.
type Options struct {
	// Source is s3://bucket/prefix: the objects an inventory or reconcile replay lists.
	Source string
	// Bucket names the bucket of Stream replays' messages when Source is empty (only used to
	// name the checkpoint).
	Stream    bool
	Reconcile bool
	// Since and Until bound the replay: objects (of an inventory, by the newest channel's last
	// modification) or stored events (Stream) from Since, before Until. Zero: unbounded. Stream
	// replays need Since.
	Since, Until time.Time
	// Rate limits publishing to this many objects (channel events) per second; 0: unlimited.
	Rate float64
	// MinAge skips samples whose newest channel is younger than this at AsOf (default now),
	// counted out of range: a consumer's own sweep leaves samples it may still be labeling live
	// alone. Unlike Until it names the checkpoint as a duration, so periodic runs share one.
	MinAge time.Duration
	AsOf   time.Time
	// DryRun lists and decides, publishes nothing and writes no checkpoint.
	DryRun bool
	// Force publishes every complete sample, and asks the consumer to label it again even when its
	// label carries the serving model's digest. Without it only stale samples are published.
	Force bool
	// ModelDigest is the serving model's manifest digest ("sha256:..."): labels of another digest
	// are stale. Empty: the current-model fact's (KV bus.ModelsBucket, key bus.CurrentModelKey);
	// without one any label counts as current (samples without one are published).
	ModelDigest string
	// UploadPrefix, LabelsPrefix and KeyPattern are the inference consumer's (defaults
	// "incoming/", "labels/", bus.DefaultKeyPattern).
	UploadPrefix, LabelsPrefix, KeyPattern string
	// Topology names the events stream (Stream replays read it), the replay streams (created when
	// missing) and the replay subjects (default bus defaults).
	Topology bus.Topology
	// Restart ignores an unfinished checkpoint of the same arguments and starts over.
	Restart bool
	// CheckpointEvery is how often progress is checkpointed (default 1s).
	CheckpointEvery time.Duration
	// Workers check samples' labels concurrently (default 16).
	Workers int
	// MaxPending bounds the publishes awaiting their acknowledgement (default 4096).
	MaxPending int
	// Region is written in the records (default "us-east-1").
	Region string

	NC    *nats.Conn
	Store Store

	// Progress and Out: how and where progress is shown (default auto on io.Discard); Logger gets
	// the structured progress and warnings (default slog.Default()).
	Progress Progress
	// ProgressEvery is the interval of progress log lines (default 5s).
	ProgressEvery time.Duration
	Out           io.Writer
	Logger        *slog.Logger
	// OnPublish, when set, is called with each sample (plate, id) queued for publishing (not on
	// a dry run), in listing order, from the goroutine of Run.
	OnPublish func(plate, id string)
	// OnCheckpoint, when set, is called with the counts after each checkpoint (tests, tools).
	OnCheckpoint func(Summary)

	// crashAfter (tests): stop abruptly, without a last checkpoint, once this many samples were
	// published, as a killed process would.
	crashAfter int64
}

// ErrCrashed is returned by Run when a test's crashAfter stopped it.
var errCrashed = errors.New("replay: stopped abruptly (test)")

// Summary counts what a replay did (cumulative over the resumed runs of one replay).
type Summary struct {
	Mode string `json:"mode"`
	// Listed objects (inventory) or stored events read (stream).
	Listed int64 `json:"listed"`
	// Samples complete samples found (inventory).
	Samples int64 `json:"samples"`
	// Published samples (inventory) or events (stream) queued; DryRun: would be.
	Published int64 `json:"published"`
	// Duplicates were already in the replay stream (published by an earlier run of this replay).
	Duplicates int64 `json:"duplicates"`
	// UpToDate samples were skipped: label of the current model (reconcile: a label or an error
	// record).
	UpToDate int64 `json:"up_to_date"`
	// OutOfRange samples were outside Since/Until.
	OutOfRange int64 `json:"out_of_range"`
	// Incomplete samples lack channels in S3 (not published).
	Incomplete int64 `json:"incomplete"`
	// Ignored objects are not channel images below the upload prefix.
	Ignored int64 `json:"ignored"`
	// Errors: refused keys, unreadable labels (published anyway), unparsable stored events.
	Errors  int64         `json:"errors"`
	Resumed bool          `json:"resumed"`
	DryRun  bool          `json:"dry_run"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// String is the one-line summary printed at the end.
func (s Summary) String() string {
	verb := "published"
	if s.DryRun {
		verb = "would publish"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "replay (%s): listed %d", s.Mode, s.Listed)
	if s.Mode != "stream" {
		fmt.Fprintf(&b, ", samples %d", s.Samples)
	}
	fmt.Fprintf(&b, ", %s %d, already queued %d, skipped as up to date %d", verb, s.Published, s.Duplicates, s.UpToDate)
	if s.OutOfRange > 0 {
		fmt.Fprintf(&b, ", out of range %d", s.OutOfRange)
	}
	fmt.Fprintf(&b, ", incomplete %d, ignored %d, errors %d", s.Incomplete, s.Ignored, s.Errors)
	if s.Resumed {
		b.WriteString(" (resumed)")
	}
	fmt.Fprintf(&b, " in %s", s.Elapsed.Round(time.Millisecond))
	return b.String()
}

// Validate checks the options that do not need the connections (the command calls it before
// connecting).
func (o Options) Validate() error {
	o.NC = nil
	return o.check()
}

func (o *Options) fill() error {
	if o.NC == nil {
		return errors.New("replay: a NATS connection is required")
	}
	if o.Store == nil && !o.Stream {
		return errors.New("replay: an object store is required")
	}
	return o.check()
}

func (o *Options) check() error {
	if o.UploadPrefix == "" {
		o.UploadPrefix = "incoming/"
	}
	if o.LabelsPrefix == "" {
		o.LabelsPrefix = "labels/"
	}
	o.Topology.Fill()
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 4096
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Progress == "" {
		o.Progress = ProgressAuto
	}
	if o.MinAge < 0 {
		return fmt.Errorf("replay: minimum age %s must be >= 0", o.MinAge)
	}
	if o.Rate < 0 {
		return fmt.Errorf("replay: --rate %v must be >= 0", o.Rate)
	}
	if !o.Until.IsZero() && !o.Since.IsZero() && !o.Until.After(o.Since) {
		return fmt.Errorf("replay: --until %s is not after --since %s", o.Until.Format(time.RFC3339), o.Since.Format(time.RFC3339))
	}
	if o.Stream {
		if o.Reconcile {
			return errors.New("replay: --stream and --reconcile exclude each other")
		}
		if o.Since.IsZero() {
			return errors.New("replay: --stream needs --since (the time to re-deliver stored events from)")
		}
		return nil
	}
	if o.Source == "" {
		return errors.New("replay: what to replay: s3://bucket/prefix (or --stream --since T)")
	}
	if o.Reconcile && o.Force {
		return errors.New("replay: --reconcile publishes only samples without label or error record; --force does not apply")
	}
	return nil
}

// Run replays as o says and returns its summary. It returns when the replay is done, ctx is
// cancelled (after a last checkpoint: running it again with the same options continues) or it
// failed.
func Run(ctx context.Context, o Options) (Summary, error) {
	if err := o.fill(); err != nil {
		return Summary{}, err
	}
	if o.ModelDigest == "" && !o.Stream && !o.Force && !o.Reconcile {
		o.ModelDigest = currentModelDigest(ctx, &o)
	}
	r, err := newRunner(ctx, &o)
	if err != nil {
		return Summary{}, err
	}
	if o.Stream {
		return r.stream(ctx)
	}
	return r.inventory(ctx)
}
