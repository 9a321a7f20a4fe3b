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
// after the MustCapture check. Safe to run from several processes at once.
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
		if c.MustCapture == "" {
			return st, nil
		}
		info, err := st.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("bus: stream %s: %w", c.Name, err)
		}
		for _, s := range info.Config.Subjects {
			if captures(s, c.MustCapture) {
				return st, nil
			}
		}
		return nil, fmt.Errorf("bus: stream %s (subjects %v) and %s: %w", c.Name, info.Config.Subjects, c.MustCapture, ErrStreamSubjects)
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
		Replicas:    c.Replicas,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, c.Name) // created by another process meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("bus: create stream %s: %w", c.Name, err)
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
// (work-queue retention, deduplication over the window, file storage).
func EnsureReadyStream(ctx context.Context, js jetstream.JetStream, t Topology, window time.Duration) error {
	return ensure(ctx, js, jetstream.StreamConfig{Name: t.ReadyStream, Subjects: []string{t.ReadySubject + ".>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: window})
}

// EnsureDLQStream creates the dead-letter stream of t when it does not exist.
func EnsureDLQStream(ctx context.Context, js jetstream.JetStream, t Topology) error {
	return ensure(ctx, js, jetstream.StreamConfig{Name: t.DLQStream, Subjects: []string{t.DLQSubject + ".>"},
		Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage})
}

// ensure creates a stream when missing and leaves an existing one as it is.
func ensure(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) error {
	if _, err := js.Stream(ctx, sc.Name); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", sc.Name, err)
	}
	if _, err := js.CreateStream(ctx, sc); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create stream %s: %w", sc.Name, err)
	}
	return nil
}

// DefaultReplayMaxAge bounds how long replayed events are kept in the replay stream.
const DefaultReplayMaxAge = 7 * 24 * time.Hour

// EnsureReplayStreams creates what the replay path of t needs when missing: the replay events
// stream on t.ReplaySubjects (limits retention, kept DefaultReplayMaxAge, deduplication over
// DefaultEventsDuplicates so a replay restarted after a crash does not queue a sample twice) and
// the replayed sample-ready work queue (deduplication over window).
func EnsureReplayStreams(ctx context.Context, js jetstream.JetStream, t Topology, window time.Duration) error {
	t.Fill()
	if err := ensure(ctx, js, jetstream.StreamConfig{Name: t.ReplayStream, Description: "S3 object events replayed for a backfill",
		Subjects: t.ReplaySubjects, Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
		Duplicates: DefaultEventsDuplicates, MaxAge: DefaultReplayMaxAge}); err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	if err := ensure(ctx, js, jetstream.StreamConfig{Name: t.ReplayReadyStream, Subjects: []string{t.ReplayReadySubject + ".>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: window}); err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	return nil
}
