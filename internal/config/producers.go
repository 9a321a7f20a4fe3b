package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/producers/bridge"
	"github.com/hpa-plates/hpa/producers/replay"
)

// ReplaySettings are the replay.* keys with the consumer's prefixes and names they share
// (inference.*): the replay.Options without the connections, and how to find the current model.
type ReplaySettings struct {
	Options replay.Options
	// Model (replay.model) and ModelPointer (inference.model_pointer) locate the serving model
	// set whose digest --only-stale compares labels with; Options.ModelDigest (replay.model_digest)
	// wins over both.
	Model, ModelPointer string
}

// Replay reads the replay.* keys (and inference.upload_prefix, labels_prefix, key_pattern,
// events_stream, model_pointer).
func Replay(v *viper.Viper) (ReplaySettings, error) {
	var s ReplaySettings
	o := &s.Options
	o.UploadPrefix = v.GetString("inference.upload_prefix")
	o.LabelsPrefix = v.GetString("inference.labels_prefix")
	o.KeyPattern = v.GetString("inference.key_pattern")
	o.Topology.EventsStream = v.GetString("inference.events_stream")
	s.ModelPointer = v.GetString("inference.model_pointer")
	s.Model = v.GetString("replay.model")
	o.ModelDigest = v.GetString("replay.model_digest")
	o.Stream, o.Reconcile = v.GetBool("replay.stream"), v.GetBool("replay.reconcile")
	o.DryRun, o.Force, o.Restart = v.GetBool("replay.dry_run"), v.GetBool("replay.force"), v.GetBool("replay.restart")
	if v.IsSet("replay.only_stale") && !v.GetBool("replay.only_stale") && !o.Force {
		return s, fmt.Errorf("replay: --only-stale=false means --force")
	}
	o.Rate = v.GetFloat64("replay.rate")
	o.Workers = v.GetInt("replay.workers")
	o.CheckpointEvery = v.GetDuration("replay.checkpoint_every")
	o.Progress = replay.Progress(v.GetString("replay.progress"))
	switch o.Progress {
	case "", replay.ProgressAuto, replay.ProgressBar, replay.ProgressLog, replay.ProgressOff:
	default:
		return s, fmt.Errorf("replay: progress %q: auto, bar, log or off", o.Progress)
	}
	var err error
	if o.Since, err = parseWhen(v.GetString("replay.since")); err != nil {
		return s, fmt.Errorf("replay: --since: %w", err)
	}
	if o.Until, err = parseWhen(v.GetString("replay.until")); err != nil {
		return s, fmt.Errorf("replay: --until: %w", err)
	}
	return s, nil
}

// parseWhen reads a time: RFC 3339 ("2024-01-02T15:04:05Z"), a date ("2024-01-02", UTC), or a
// duration before now ("36h"). Empty is the zero time.
func parseWhen(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time, a date (YYYY-MM-DD) or a duration before now (36h)", s)
}

// Bridge reads the bridge.* keys (and inference.events_stream) into bridge.Main's options; the
// caller adds the NATS connection (NATS) and the logger.
func Bridge(v *viper.Viper) bridge.MainOptions {
	var m bridge.MainOptions
	m.SQS = bridge.SQSConfig{Endpoint: v.GetString("bridge.sqs_endpoint"), Region: v.GetString("bridge.sqs_region")}
	o := &m.Options
	o.QueueURL = v.GetString("bridge.sqs_queue_url")
	o.Topology.EventsStream = v.GetString("inference.events_stream")
	o.SubjectPrefix = v.GetString("bridge.subject_prefix")
	o.Pollers = v.GetInt("bridge.pollers")
	o.WaitTime = v.GetDuration("bridge.wait_time")
	o.Visibility = v.GetDuration("bridge.visibility")
	o.PublishTimeout = v.GetDuration("bridge.publish_timeout")
	o.RetryDelay = v.GetDuration("bridge.retry_delay")
	m.MetricsAddr = v.GetString("bridge.metrics_addr")
	return m
}
