package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The training loop's JetStream objects, defined once: the training coordinator and workers
// (consumers/training), `hpa model` and the inference consumer (which watches the current-model
// fact) all create them through these, with t.Replicas (config nats.replicas).

// ModelsKV is the configuration of the current-model bucket (ModelsBucket): the current
// Promotion under CurrentModelKey, kept with its history.
func ModelsKV(t Topology) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: ModelsBucket, Description: "hpa current model (promotions)",
		History: 16, Storage: jetstream.FileStorage, Replicas: t.Replicas}
}

// DatasetsKV is the configuration of the dataset registry bucket (DatasetsBucket).
func DatasetsKV(t Topology) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: DatasetsBucket, Description: "hpa training dataset registry",
		History: 1, Storage: jetstream.FileStorage, Replicas: t.Replicas}
}

// TrainingKV is the configuration of the training runs' state bucket (TrainingBucket).
func TrainingKV(t Topology) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: TrainingBucket, Description: "hpa training runs, folds and triggers",
		History: 1, Storage: jetstream.FileStorage, Replicas: t.Replicas}
}

// TrainJobsStreamConfig is the configuration of the fold-job work queue (TrainJobsStream):
// work-queue retention, deduplication over a day (a coordinator restarted mid-run queues a fold
// once).
func TrainJobsStreamConfig(t Topology) jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: TrainJobsStream, Subjects: []string{TrainJobsSubject + ".>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 24 * time.Hour, Replicas: t.Replicas}
}

// EnsureModelsBucket creates (or opens) the current-model bucket of t.
func EnsureModelsBucket(ctx context.Context, js jetstream.JetStream, t Topology) (jetstream.KeyValue, error) {
	return EnsureKeyValue(ctx, js, ModelsKV(t))
}

// EnsureDatasetsBucket creates (or opens) the dataset registry bucket of t.
func EnsureDatasetsBucket(ctx context.Context, js jetstream.JetStream, t Topology) (jetstream.KeyValue, error) {
	return EnsureKeyValue(ctx, js, DatasetsKV(t))
}

// EnsureTrainingBucket creates (or opens) the training state bucket of t.
func EnsureTrainingBucket(ctx context.Context, js jetstream.JetStream, t Topology) (jetstream.KeyValue, error) {
	return EnsureKeyValue(ctx, js, TrainingKV(t))
}

// EnsureTrainJobsStream creates the fold-job work queue of t when missing (replicas raised to
// t.Replicas, never lowered).
func EnsureTrainJobsStream(ctx context.Context, js jetstream.JetStream, t Topology) error {
	_, err := EnsureStream(ctx, js, TrainJobsStreamConfig(t))
	return err
}
