package config

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/consumers/training"
)

// Training reads the training.* keys (the coordinator of `hpa training`, `hpa up`, `hpa model`),
// inference.events_stream / events_subjects / dlq_* / promoted_subject (the streams it shares with
// the inference consumer), s3.bucket and cache_dir. Unset keys keep training.DefaultConfig's values.
func Training(v *viper.Viper) (training.Config, error) {
	c := training.DefaultConfig()
	str := func(key string, dst *string) {
		if s := v.GetString(key); s != "" {
			*dst = s
		}
	}
	str("training.labels_prefix", &c.LabelsPrefix)
	str("training.images_prefix", &c.ImagesPrefix)
	str("training.runs_prefix", &c.RunsPrefix)
	str("training.datasets_prefix", &c.DatasetsPrefix)
	str("training.models_prefix", &c.Models.ModelsPrefix)
	str("training.model_pointer", &c.Models.Pointer)
	str("training.eval_prefix", &c.Models.EvalPrefix)
	str("training.consumer", &c.Consumer)
	str("s3.bucket", &c.Models.Bucket)
	str("inference.events_stream", &c.Topology.EventsStream)
	str("inference.events_filter", &c.Topology.EventsFilter)
	str("inference.dlq_stream", &c.Topology.DLQStream)
	str("inference.dlq_subject", &c.Topology.DLQSubject)
	str("inference.promoted_subject", &c.Topology.PromotedSubject)
	if s := v.GetStringSlice("inference.events_subjects"); len(s) > 0 {
		c.Topology.EventsSubjects = s
	}
	if v.IsSet("nats.replicas") {
		c.Topology.Replicas = v.GetInt("nats.replicas")
	}
	if v.IsSet("training.min_new") {
		c.MinNew = v.GetInt("training.min_new")
	}
	if v.IsSet("training.growth_percent") {
		c.GrowthPercent = v.GetFloat64("training.growth_percent")
	}
	if v.IsSet("training.quiet") {
		c.Quiet = v.GetDuration("training.quiet")
	}
	if v.IsSet("training.poll") {
		c.Poll = v.GetDuration("training.poll")
	}
	c.Relabel = v.GetBool("training.relabel")
	if v.IsSet("training.relabel_delay") {
		c.RelabelDelay = v.GetDuration("training.relabel_delay")
	}
	g := training.DefaultGuard()
	if v.IsSet("training.tolerance") {
		g.Tolerance = v.GetFloat64("training.tolerance")
	}
	if v.IsSet("training.class_drop") {
		g.ClassDrop = v.GetFloat64("training.class_drop")
	}
	if v.IsSet("training.class_min_positives") {
		g.MinPositives = v.GetInt("training.class_min_positives")
	}
	c.Models.Guard = g
	s := &c.Settings
	str("training.arch", &s.Arch)
	str("training.name", &s.Name)
	num := func(key string, dst *int) {
		if v.IsSet(key) {
			*dst = v.GetInt(key)
		}
	}
	num("training.size", &s.Size)
	num("training.folds", &s.Folds)
	num("training.cycles", &s.Cycles)
	num("training.epochs", &s.EpochsPerCycle)
	num("training.batch", &s.Batch)
	num("training.tta_views", &s.TTAViews)
	if v.IsSet("training.seed") {
		s.Seed = v.GetInt64("training.seed")
	}
	if v.IsSet("training.lr") {
		s.LR = v.GetFloat64("training.lr")
	}
	if cd := v.GetString("cache_dir"); cd != "" {
		c.CacheDir = filepath.Join(cd, "training")
	}
	switch {
	case c.Settings.Folds < 2:
		return c, fmt.Errorf("training: folds must be >= 2, not %d", c.Settings.Folds)
	case c.Quiet < 0 || c.MinNew < 0:
		return c, fmt.Errorf("training: quiet and min_new must not be negative")
	}
	return c, nil
}

// TrainingWorker reads the training_worker.* keys of `hpa training worker`, torch.* and cache_dir.
func TrainingWorker(v *viper.Viper) training.WorkerConfig {
	c := training.WorkerConfig{Name: v.GetString("training_worker.name"), Device: v.GetString("training_worker.device"),
		Workers: v.GetInt("training_worker.workers"), Torch: Torch(v), RunsPrefix: v.GetString("training.runs_prefix")}
	if v.IsSet("nats.replicas") {
		c.Replicas = v.GetInt("nats.replicas")
	}
	if v.IsSet("training_worker.ack_wait") {
		c.AckWait = v.GetDuration("training_worker.ack_wait")
	}
	if c.AckWait <= 0 {
		c.AckWait = time.Minute
	}
	if cd := v.GetString("cache_dir"); cd != "" {
		c.CacheDir = filepath.Join(cd, "training-worker")
	}
	return c
}
