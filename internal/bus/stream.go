package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultEventsDuplicates is the deduplication window of the events stream: a repeat of an event
// (same Nats-Msg-Id) within it is dropped. It must cover the time between a crash of a publisher
// and the restart that republishes its pending events.
const DefaultEventsDuplicates = 24 * time.Hour

// EventsStreamConfig describes the events stream.
type EventsStreamConfig struct {
	// Name is the stream (default EventsStream).
	Name string
	// Subjects are captured when the stream is created (default EventsSubjectPrefix + ".>").
	Subjects []string
	// MustCapture, when set, is a subject an existing stream has to capture (a publisher's own
	// subject, e.g. "s3.events.>"); otherwise an existing stream is used as it is.
	MustCapture string
	// Duplicates is the deduplication window (default DefaultEventsDuplicates).
	Duplicates time.Duration
	// MaxAge bounds how long events are kept (0: forever).
	MaxAge   time.Duration
	Storage  jetstream.StorageType // default file storage
	Replicas int
}

// ErrStreamSubjects is returned by EnsureEventsStream for an existing stream that does not capture
// MustCapture.
var ErrStreamSubjects = errors.New("stream does not capture the subject")

// EnsureEventsStream is the single definition of the events stream: it creates the stream (LIMITS
// retention, so consumers can replay it) when it does not exist; an existing one is used as it is
// after the MustCapture check, its replicas raised to Replicas (never lowered). Safe to run from
// several processes at once.
func EnsureEventsStream(ctx context.Context, js jetstream.JetStream, c EventsStreamConfig) (jetstream.Stream, error) {
	if c.Name == "" {
		c.Name = EventsStream
	}
	if len(c.Subjects) == 0 {
		c.Subjects = []string{EventsSubjectPrefix + ".>"}
	}
	if c.Duplicates <= 0 {
		c.Duplicates = DefaultEventsDuplicates
	}
	st, err := js.Stream(ctx, c.Name)
	if err == nil {
		if c.MustCapture != "" {
			info, err := st.Info(ctx)
			if err != nil {
				return nil, fmt.Errorf("bus: stream %s: %w", c.Name, err)
			}
			ok := false
			for _, s := range info.Config.Subjects {
				ok = ok || captures(s, c.MustCapture)
			}
			if !ok {
				return nil, fmt.Errorf("bus: stream %s (subjects %v) and %s: %w", c.Name, info.Config.Subjects, c.MustCapture, ErrStreamSubjects)
			}
		}
		if err := raiseReplicas(ctx, js, st, c.Replicas); err != nil {
			return nil, err
		}
		return st, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("bus: stream %s: %w", c.Name, err)
	}
	st, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        c.Name,
		Description: "S3 object events",
		Subjects:    c.Subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     c.Storage,
		Duplicates:  c.Duplicates,
		MaxAge:      c.MaxAge,
		Replicas:    replicasOf(c.Replicas),
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, c.Name) // created by another process meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("bus: create stream %s: %w", c.Name, replicasHint(err, c.Replicas))
	}
	return st, nil
}

// captures reports whether stream subject s matches every subject pattern p matches: s is p,
// the full wildcard ">", or a prefix of p ending in ">" ("s3.>" captures "s3.events.>"), with "*"
// in s matching any one token of p.
func captures(s, p string) bool {
	st, pt := strings.Split(s, "."), strings.Split(p, ".")
	for i, tok := range st {
		if tok == ">" {
			return i < len(pt)
		}
		if i >= len(pt) || (tok != "*" && tok != pt[i]) {
			return false
		}
	}
	return len(st) == len(pt)
}

// EnsureReadyStream creates the sample-ready work queue of t when it does not exist
// (work-queue retention, deduplication over the window, file storage, t.Replicas).
func EnsureReadyStream(ctx context.Context, js jetstream.JetStream, t Topology, window time.Duration) error {
	_, err := EnsureStream(ctx, js, jetstream.StreamConfig{Name: t.ReadyStream, Subjects: []string{t.ReadySubject + ".>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: window, Replicas: t.Replicas})
	return err
}

// EnsureDLQStream creates the dead-letter stream of t when it does not exist (t.Replicas).
func EnsureDLQStream(ctx context.Context, js jetstream.JetStream, t Topology) error {
	_, err := EnsureStream(ctx, js, jetstream.StreamConfig{Name: t.DLQStream, Subjects: []string{t.DLQSubject + ".>"},
		Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Replicas: t.Replicas})
	return err
}

// EnsureStream creates the stream sc when it is missing. An existing stream keeps its
// configuration, except that its replicas are raised to sc.Replicas when it has fewer (a
// deployment moved to a cluster); they are never lowered, so a replica started with a smaller
// nats.replicas does not shrink what others made. sc.Replicas 0 means 1. Safe to run from several
// processes at once.
func EnsureStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) (jetstream.Stream, error) {
	sc.Replicas = replicasOf(sc.Replicas)
	st, err := js.Stream(ctx, sc.Name)
	if err == nil {
		if err := raiseReplicas(ctx, js, st, sc.Replicas); err != nil {
			return nil, err
		}
		return st, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("bus: stream %s: %w", sc.Name, err)
	}
	st, err = js.CreateStream(ctx, sc)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, sc.Name) // created by another process meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("bus: create stream %s: %w", sc.Name, replicasHint(err, sc.Replicas))
	}
	return st, nil
}

// EnsureKeyValue creates the KV bucket kc or updates an existing one to kc (TTL, history, ...),
// except that its replicas are never lowered: an existing bucket with more replicas than
// kc.Replicas keeps them. kc.Replicas 0 means 1.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, kc jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kc.Replicas = replicasOf(kc.Replicas)
	if kv, err := js.KeyValue(ctx, kc.Bucket); err == nil {
		status, err := kv.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("bus: kv bucket %s: %w", kc.Bucket, err)
		}
		if ks, ok := status.(*jetstream.KeyValueBucketStatus); ok && ks.StreamInfo() != nil && ks.StreamInfo().Config.Replicas > kc.Replicas {
			kc.Replicas = ks.StreamInfo().Config.Replicas
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bus: kv bucket %s: %w", kc.Bucket, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, kc)
	if err != nil {
		return nil, fmt.Errorf("bus: kv bucket %s: %w", kc.Bucket, replicasHint(err, kc.Replicas))
	}
	return kv, nil
}

// replicasOf is the replica count of a setting (0: 1).
func replicasOf(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// raiseReplicas raises st's replicas to n when it has fewer.
func raiseReplicas(ctx context.Context, js jetstream.JetStream, st jetstream.Stream, n int) error {
	n = replicasOf(n)
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("bus: stream %s: %w", st.CachedInfo().Config.Name, err)
	}
	if info.Config.Replicas >= n {
		return nil
	}
	cfg := info.Config
	cfg.Replicas = n
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("bus: raise the replicas of stream %s from %d to %d: %w", cfg.Name, info.Config.Replicas, n, replicasHint(err, n))
	}
	return nil
}

// replicasHint names the setting when the server refuses the replicas (more than its cluster has).
func replicasHint(err error, n int) error {
	if n > 1 && strings.Contains(strings.ToLower(err.Error()), "replica") {
		return fmt.Errorf("%w (nats.replicas is %d: it needs a JetStream cluster of at least %d servers)", err, n, n)
	}
	return err
}

// DefaultReplayMaxAge bounds how long replayed events are kept in the replay stream.
const DefaultReplayMaxAge = 7 * 24 * time.Hour

// EnsureReplayStreams creates what the replay path of t needs when missing: the replay events
// stream on t.ReplaySubjects (limits retention, kept DefaultReplayMaxAge, deduplication over
// DefaultEventsDuplicates so a replay restarted after a crash does not queue a sample twice) and
// the replayed sample-ready work queue (deduplication over window), both with t.Replicas.
func EnsureReplayStreams(ctx context.Context, js jetstream.JetStream, t Topology, window time.Duration) error {
	t.Fill()
	if _, err := EnsureStream(ctx, js, jetstream.StreamConfig{Name: t.ReplayStream, Description: "S3 object events replayed for a backfill",
		Subjects: t.ReplaySubjects, Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
		Duplicates: DefaultEventsDuplicates, MaxAge: DefaultReplayMaxAge, Replicas: t.Replicas}); err != nil {
		return err
	}
	_, err := EnsureStream(ctx, js, jetstream.StreamConfig{Name: t.ReplayReadyStream, Subjects: []string{t.ReplayReadySubject + ".>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: window, Replicas: t.Replicas})
	return err
}

// IsSubjectOverlap reports whether err is JetStream's refusal to create a stream whose subjects
// another stream already captures (e.g. the replay stream beside an events stream on "s3.>").
func IsSubjectOverlap(err error) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) && ae.ErrorCode == jetstream.ErrorCode(10065)
}
