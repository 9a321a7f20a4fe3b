package bus

import "testing"

// TestTrainingObjectsCarryReplicas: every training bucket and the fold-job stream take the
// topology's replicas (nats.replicas), and the names stay the shared constants.
func TestTrainingObjectsCarryReplicas(t *testing.T) {
	top := Topology{Replicas: 3}
	for _, kc := range []struct {
		bucket    string
		got, want string
		r         int
	}{
		{"models", ModelsKV(top).Bucket, ModelsBucket, ModelsKV(top).Replicas},
		{"datasets", DatasetsKV(top).Bucket, DatasetsBucket, DatasetsKV(top).Replicas},
		{"training", TrainingKV(top).Bucket, TrainingBucket, TrainingKV(top).Replicas},
		{"jobs", TrainJobsStreamConfig(top).Name, TrainJobsStream, TrainJobsStreamConfig(top).Replicas},
	} {
		if kc.got != kc.want || kc.r != 3 {
			t.Errorf("%s: %s with %d replicas, want %s with 3", kc.bucket, kc.got, kc.r, kc.want)
		}
	}
	if h := ModelsKV(top).History; h < 2 {
		t.Errorf("models bucket keeps %d revisions; rollback needs the history", h)
	}
}
