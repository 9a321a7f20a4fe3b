package bus

// Default names of the JetStream topology. A deployment may rename what the inference consumer
// uses (config inference.*: events_stream, ready_subject, ...), so code takes names from a
// Topology; the constants are its defaults and the names of the parts that are not configurable.
const (
	// EventsStream captures S3 object-created events (LIMITS retention, so events can be replayed).
	EventsStream = "S3_EVENTS"
	// EventsSubjectPrefix: events of a bucket go to <prefix>.<bucket> (EventSubject).
	EventsSubjectPrefix = "s3.events"
	// ReplaySubjectPrefix: events republished by the replay producer go to <prefix>.<bucket>, apart
	// from live uploads.
	ReplaySubjectPrefix = "s3.replay"
	// ReadyStream is the work queue of complete samples: <ReadySubject>.<plate token>.
	ReadyStream  = "HPA_READY"
	ReadySubject = "hpa.ready"
	// DLQStream keeps dead letters: <DLQSubject>.<plate token> ("_" when there is no plate).
	DLQStream  = "HPA_DLQ"
	DLQSubject = "hpa.dlq"
	// LabelsSubject: a LabelWritten per label on <LabelsSubject>.<plate token> (core NATS).
	LabelsSubject = "hpa.labels"
	// PromotedSubject carries model promotions (Promotion).
	PromotedSubject = "hpa.models.promoted"
	// EventsConsumer and LabelConsumer are the inference consumer's durable consumers on the
	// events and ready streams, shared by all replicas.
	EventsConsumer = "hpa-assembler"
	LabelConsumer  = "hpa-labeler"
	// KV buckets of the inference consumer: channel presence per sample, plate CSV generations,
	// plate CSV builder locks.
	SamplesBucket = "hpa_samples"
	PlatesBucket  = "hpa_plates"
	LocksBucket   = "hpa_locks"

	// TrainJobsStream is the work queue of fold training jobs (<TrainJobsSubject>.<run>), pulled by
	// TrainWorkersConsumer.
	TrainJobsStream      = "HPA_TRAIN_JOBS"
	TrainJobsSubject     = "hpa.train.jobs"
	TrainWorkersConsumer = "hpa-train-workers"
	// ModelsBucket holds the current-model pointer, DatasetsBucket the dataset registry,
	// ReplayBucket the progress of replays.
	ModelsBucket   = "hpa_models"
	DatasetsBucket = "hpa_datasets"
	ReplayBucket   = "hpa_replay"

	// Replay (producers/replay): events republished for a backfill go to
	// <ReplaySubjectPrefix>.<bucket>, captured by ReplayStream apart from live uploads. The inference
	// consumer assembles them with ReplayEventsConsumer, queues complete samples on
	// <ReplayReadySubject>.<plate token> (ReplayReadyStream) and labels them with
	// ReplayLabelConsumer only when no live sample is waiting.
	ReplayStream         = "HPA_REPLAY"
	ReplayEventsConsumer = "hpa-assembler-replay"
	ReplayReadyStream    = "HPA_READY_REPLAY"
	ReplayReadySubject   = "hpa.replay.ready"
	ReplayLabelConsumer  = "hpa-labeler-replay"
	// HeaderReplayForce, on a replayed event, asks the consumer to label the sample again even when
	// its current label has the serving model's digest (hpa replay --force); the value makes the
	// sample-ready message of this replay distinct from earlier ones.
	HeaderReplayForce = "Hpa-Replay-Force"
)

// Topology names the streams, subjects, durable consumers and KV buckets one inference
// deployment uses. Zero fields take the defaults (Fill).
type Topology struct {
	// EventsStream is where S3 events arrive; created on EventsSubjects when missing.
	EventsStream   string
	EventsSubjects []string
	// EventsFilter filters the events consumer (empty: the whole stream).
	EventsFilter    string
	ReadyStream     string
	ReadySubject    string // prefix: <ReadySubject>.<plate token>
	DLQStream       string
	DLQSubject      string // prefix: <DLQSubject>.<plate token>
	LabelsSubject   string // prefix: <LabelsSubject>.<plate token>
	PromotedSubject string
	EventsConsumer  string
	LabelConsumer   string
	SamplesBucket   string
	PlatesBucket    string
	LocksBucket     string

	// Replicas is how many servers of a NATS cluster keep each stream and KV bucket the
	// deployment creates (config nats.replicas; 0 means 1, one server). Existing streams are
	// raised to it, never lowered (EnsureStream, EnsureKeyValue).
	Replicas int

	// Replay path (see ReplayStream): its events stream and subjects, ready stream and subject
	// prefix, and durable consumers.
	ReplayStream         string
	ReplaySubjects       []string
	ReplayReadyStream    string
	ReplayReadySubject   string
	ReplayEventsConsumer string
	ReplayLabelConsumer  string
}

// DefaultTopology is the topology of the default names.
func DefaultTopology() Topology {
	return Topology{
		EventsStream: EventsStream, EventsSubjects: []string{EventsSubjectPrefix + ".>"},
		ReadyStream: ReadyStream, ReadySubject: ReadySubject, DLQStream: DLQStream, DLQSubject: DLQSubject,
		LabelsSubject: LabelsSubject, PromotedSubject: PromotedSubject,
		EventsConsumer: EventsConsumer, LabelConsumer: LabelConsumer,
		SamplesBucket: SamplesBucket, PlatesBucket: PlatesBucket, LocksBucket: LocksBucket,
		ReplayStream: ReplayStream, ReplaySubjects: []string{ReplaySubjectPrefix + ".>"},
		ReplayReadyStream: ReplayReadyStream, ReplayReadySubject: ReplayReadySubject,
		ReplayEventsConsumer: ReplayEventsConsumer, ReplayLabelConsumer: ReplayLabelConsumer,
	}
}

// Fill gives every empty field its default.
func (t *Topology) Fill() {
	d := DefaultTopology()
	for _, f := range []struct {
		p   *string
		def string
	}{
		{&t.EventsStream, d.EventsStream}, {&t.ReadyStream, d.ReadyStream}, {&t.ReadySubject, d.ReadySubject},
		{&t.DLQStream, d.DLQStream}, {&t.DLQSubject, d.DLQSubject}, {&t.LabelsSubject, d.LabelsSubject},
		{&t.PromotedSubject, d.PromotedSubject}, {&t.EventsConsumer, d.EventsConsumer}, {&t.LabelConsumer, d.LabelConsumer},
		{&t.SamplesBucket, d.SamplesBucket}, {&t.PlatesBucket, d.PlatesBucket}, {&t.LocksBucket, d.LocksBucket},
		{&t.ReplayStream, d.ReplayStream}, {&t.ReplayReadyStream, d.ReplayReadyStream},
		{&t.ReplayReadySubject, d.ReplayReadySubject}, {&t.ReplayEventsConsumer, d.ReplayEventsConsumer},
		{&t.ReplayLabelConsumer, d.ReplayLabelConsumer},
	} {
		if *f.p == "" {
			*f.p = f.def
		}
	}
	if len(t.EventsSubjects) == 0 {
		t.EventsSubjects = d.EventsSubjects
	}
	if len(t.ReplaySubjects) == 0 {
		t.ReplaySubjects = d.ReplaySubjects
	}
}

// EventSubject is the subject events of bucket go to: <prefix>.<bucket> (prefix "" means
// EventsSubjectPrefix). Bucket names may contain '.', which adds subject tokens; subscribe to
// "<prefix>.>" to see every bucket.
func EventSubject(prefix, bucket string) string {
	if prefix == "" {
		prefix = EventsSubjectPrefix
	}
	if len(prefix) > 0 && prefix[len(prefix)-1] == '.' {
		prefix = prefix[:len(prefix)-1]
	}
	return prefix + "." + bucket
}

// ReadySubjectOf is the subject of plate's sample-ready messages.
func (t Topology) ReadySubjectOf(plate string) string {
	return t.ReadySubject + "." + SubjectToken(plate)
}

// LabelsSubjectOf is the subject of plate's label-written events.
func (t Topology) LabelsSubjectOf(plate string) string {
	return t.LabelsSubject + "." + SubjectToken(plate)
}

// DLQSubjectOf is the subject of plate's dead letters ("_" for none).
func (t Topology) DLQSubjectOf(plate string) string {
	if plate == "" {
		return t.DLQSubject + "._"
	}
	return t.DLQSubject + "." + SubjectToken(plate)
}

// Training consumer names (consumers/training).
const (
	// TrainingConsumer is the coordinator's durable consumer on the events stream (label files).
	TrainingConsumer = "hpa-training"
	// TrainingBucket holds the training runs' machine state: the run lock ("active"), each run
	// ("run.<id>"), fold progress ("fold.<id>.<k>", written by workers) and manual triggers.
	TrainingBucket = "hpa_training"
	// CurrentModelKey is the key of the current-model fact (a Promotion) in ModelsBucket.
	CurrentModelKey = "current"
)

// ReplayReadySubjectOf is the subject of plate's replayed sample-ready messages.
func (t Topology) ReplayReadySubjectOf(plate string) string {
	return t.ReplayReadySubject + "." + SubjectToken(plate)
}
