package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/testenv"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

const (
	testAK, testSK = "replay-test-access", "replay-test-secret-key"
	testBucket     = "plates"
)

type env struct {
	t     testing.TB
	nc    *nats.Conn
	js    jetstream.JetStream
	store *objstore.Bucket
}

func newEnv(t testing.TB) *env {
	t.Helper()
	_, nc, js := servers.JetStream(t, "")
	srv := servers.S3(t, s3local.Options{AccessKey: testAK, SecretKey: testSK, Buckets: []string{testBucket},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	store, err := objstore.Open(context.Background(), objstore.Config{Endpoint: srv.Endpoint(), Region: "us-east-1", PathStyle: true,
		Bucket: testBucket, AccessKey: testAK, SecretKey: testSK})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, nc: nc, js: js, store: store}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (e *env) opts(src string) Options {
	return Options{Source: src, NC: e.nc, Store: e.store, Logger: quietLogger(), Progress: ProgressOff,
		CheckpointEvery: 5 * time.Millisecond}
}

// upload puts the given channels of sample id on plate (all four when none given).
func (e *env) upload(plate, id string, channels ...string) {
	e.t.Helper()
	if len(channels) == 0 {
		channels = []string{"red", "green", "blue", "yellow"}
	}
	for _, c := range channels {
		key := fmt.Sprintf("incoming/%s/%s_%s.png", plate, id, c)
		if err := e.store.Put(context.Background(), key, []byte("png "+key), "image/png"); err != nil {
			e.t.Fatal(err)
		}
	}
}

// putLabel writes a valid label of sample id with the model digest.
func (e *env) putLabel(plate, id, digest string) {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(e.t), "cmd/hpa/testdata/label-golden/043b67cc-3685-11e8-8a45-e18269123419.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	l, err := labels.ParseLabel(b)
	if err != nil {
		e.t.Fatal(err)
	}
	l.SampleID, l.Model.ManifestDigest = id, digest
	out, err := labels.MarshalLabel(l)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.Put(context.Background(), "labels/"+plate+"/"+id+".json", out, "application/json"); err != nil {
		e.t.Fatal(err)
	}
}

// replayed returns the samples (plate/id) in the replay stream, one entry per message, and the
// messages.
func (e *env) replayed() ([]string, []jetstream.RawStreamMsg) {
	e.t.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, bus.ReplayStream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	var msgs []jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			e.t.Fatal(err)
		}
		evs, err := bus.ParseS3Events(m.Data)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(evs) == 0 {
			e.t.Fatalf("message %d has no records", seq)
		}
		k := strings.TrimPrefix(evs[0].Key, "incoming/")
		names = append(names, k[:strings.LastIndex(k, "_")])
		msgs = append(msgs, *m)
	}
	sort.Strings(names)
	return names, msgs
}

func TestInventoryPublishesEachCompleteSampleOnce(t *testing.T) {
	e := newEnv(t)
	var want []string
	for p := range 3 {
		for i := range 5 {
			plate, id := fmt.Sprintf("plate%d", p), fmt.Sprintf("s%02d", i)
			e.upload(plate, id)
			want = append(want, plate+"/"+id)
		}
	}
	e.upload("plate1", "partial", "red", "green")
	if err := e.store.Put(context.Background(), "incoming/plate1/notes.txt", []byte("x"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	// Outside the replayed prefix.
	if err := e.store.Put(context.Background(), "archive/plate1/s00_red.png", []byte("x"), "image/png"); err != nil {
		t.Fatal(err)
	}
	sum, err := Run(context.Background(), e.opts("s3://plates/incoming"))
	if err != nil {
		t.Fatal(err)
	}
	got, msgs := e.replayed()
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("replayed %v\nwant %v", got, want)
	}
	if sum.Listed != 15*4+2+1 || sum.Samples != 15 || sum.Published != 15 || sum.Incomplete != 1 || sum.Ignored != 1 || sum.Errors != 0 {
		t.Fatalf("summary %+v", sum)
	}
	// Each message is an S3 notification of the sample's four channels, on the replay subject.
	evs, err := bus.ParseS3Events(msgs[0].Data)
	if err != nil || len(evs) != 4 {
		t.Fatalf("%d records, %v", len(evs), err)
	}
	if msgs[0].Subject != "s3.replay.plates" {
		t.Fatalf("subject %s", msgs[0].Subject)
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		if !ev.IsCreate() || ev.ETag == "" || ev.Size == 0 || ev.Bucket != "plates" {
			t.Fatalf("record %+v", ev)
		}
		seen[ev.Key[strings.LastIndex(ev.Key, "_"):]] = true
	}
	if len(seen) != 4 {
		t.Fatalf("channels %v", seen)
	}
	if !strings.Contains(sum.String(), "published 15") {
		t.Fatalf("summary line %q", sum.String())
	}
	// The same replay again: a new run, the samples are published again (they are not stale
	// for lack of a model digest only when labeled).
	sum2, err := Run(context.Background(), e.opts("s3://plates/incoming"))
	if err != nil || sum2.Published != 15 || sum2.Resumed {
		t.Fatalf("second run %+v, %v", sum2, err)
	}
}

func TestOnlyStaleAndForce(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"cur", "old", "none", "reup"} {
		e.upload("p", id)
	}
	e.putLabel("p", "cur", "sha256:new")
	e.putLabel("p", "old", "sha256:old")
	e.putLabel("p", "reup", "sha256:new")
	time.Sleep(1100 * time.Millisecond) // S3 times have a second's resolution
	e.upload("p", "reup", "blue")       // a channel uploaded again after its label
	o := e.opts("s3://plates/incoming/")
	o.ModelDigest = "sha256:new"
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := e.replayed()
	if strings.Join(got, ",") != "p/none,p/old,p/reup" || sum.Published != 3 || sum.UpToDate != 1 {
		t.Fatalf("only-stale replayed %v, %+v", got, sum)
	}
	// Without a digest: labeled samples count as current (unless a channel is newer).
	o.ModelDigest = ""
	if sum, err = Run(context.Background(), o); err != nil || sum.Published != 2 || sum.UpToDate != 2 {
		t.Fatalf("no digest: %+v, %v", sum, err)
	}
	// Dry run: decides, publishes nothing.
	o.ModelDigest, o.DryRun = "sha256:new", true
	before, _ := e.replayed()
	if sum, err = Run(context.Background(), o); err != nil || sum.Published != 3 || !sum.DryRun {
		t.Fatalf("dry run: %+v, %v", sum, err)
	}
	if after, _ := e.replayed(); len(after) != len(before) {
		t.Fatalf("dry run published %d", len(after)-len(before))
	}
	// Force: everything, marked.
	o.DryRun, o.Force = false, true
	if sum, err = Run(context.Background(), o); err != nil || sum.Published != 4 {
		t.Fatalf("force: %+v, %v", sum, err)
	}
	_, msgs := e.replayed()
	if msgs[len(msgs)-1].Header.Get(bus.HeaderReplayForce) == "" || msgs[0].Header.Get(bus.HeaderReplayForce) != "" {
		t.Fatal("force header missing on forced replay, or present on the first")
	}
}

func TestReconcile(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"labeled", "failed", "lost"} {
		e.upload("p", id)
	}
	e.putLabel("p", "labeled", "sha256:x")
	if err := e.store.Put(context.Background(), "labels/p/failed.error.json", []byte(`{"schema":"hpa.error/v1"}`), "application/json"); err != nil {
		t.Fatal(err)
	}
	o := e.opts("s3://plates/incoming/p/")
	o.Reconcile = true
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := e.replayed()
	if strings.Join(got, ",") != "p/lost" || sum.Published != 1 || sum.UpToDate != 2 {
		t.Fatalf("reconcile replayed %v, %+v", got, sum)
	}
}

// A replay killed mid-way (no last checkpoint) and started again with the same arguments
// continues after its checkpoint and queues no sample twice.
func TestResumeAfterKillPublishesNoSampleTwice(t *testing.T) {
	e := newEnv(t)
	const n = 120
	for i := range n {
		e.upload(fmt.Sprintf("plate%d", i/40), fmt.Sprintf("s%03d", i))
	}
	o := e.opts("s3://plates/incoming/")
	o.crashAfter = 70
	o.CheckpointEvery = time.Nanosecond
	var checkpoints int
	o.OnCheckpoint = func(Summary) { checkpoints++ }
	if _, err := Run(context.Background(), o); err != errCrashed {
		t.Fatalf("first run: %v", err)
	}
	got, _ := e.replayed()
	if len(got) != 70 || checkpoints == 0 {
		t.Fatalf("first run queued %d, %d checkpoints", len(got), checkpoints)
	}
	// Lose the last checkpoints, as a kill between a publish and its checkpoint would.
	o.crashAfter = 0
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = e.replayed()
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			t.Fatalf("sample %s queued twice", got[i])
		}
	}
	if len(got) != n || !sum.Resumed || sum.Published+sum.Duplicates < n {
		t.Fatalf("after resume %d queued (want %d), %+v", len(got), n, sum)
	}
	// Finished: a new run with the same arguments starts over.
	sum, err = Run(context.Background(), o)
	if err != nil || sum.Resumed || sum.Published != n {
		t.Fatalf("rerun %+v, %v", sum, err)
	}
}

func TestResumeKeepsPosition(t *testing.T) {
	e := newEnv(t)
	for i := range 30 {
		e.upload("p", fmt.Sprintf("s%03d", i))
	}
	o := e.opts("s3://plates/incoming/")
	o.Rate = 4 * 40 // objects/s: 40 samples/s
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	sum, err := Run(ctx, o)
	if err == nil || sum.Published == 0 || sum.Published >= 30 {
		t.Fatalf("cancelled run: %+v, %v", sum, err)
	}
	first := sum.Published
	o.Rate = 0
	sum, err = Run(context.Background(), o)
	// The resumed run continues after the checkpoint: a sample published after the last checkpoint
	// of the cancelled run may be offered again (JetStream drops it: "already queued"), but a run
	// that started over would offer all `first` again.
	if err != nil || !sum.Resumed || sum.Published+sum.Duplicates != 30 || (sum.Duplicates > 0 && sum.Duplicates >= first) {
		t.Fatalf("resumed after %d: %+v, %v", first, sum, err)
	}
	if got, _ := e.replayed(); len(got) != 30 {
		t.Fatalf("queued %d", len(got))
	}
}

func TestSinceUntil(t *testing.T) {
	e := newEnv(t)
	e.upload("p", "early")
	time.Sleep(1100 * time.Millisecond)
	mid := time.Now()
	time.Sleep(1100 * time.Millisecond)
	e.upload("p", "late")
	o := e.opts("s3://plates/incoming/")
	o.Since = mid
	sum, err := Run(context.Background(), o)
	if err != nil || sum.Published != 1 || sum.OutOfRange != 1 {
		t.Fatalf("since: %+v, %v", sum, err)
	}
	o.Since, o.Until = time.Time{}, mid
	sum, err = Run(context.Background(), o)
	if err != nil || sum.Published != 1 || sum.OutOfRange != 1 {
		t.Fatalf("until: %+v, %v", sum, err)
	}
	got, _ := e.replayed()
	if strings.Join(got, ",") != "p/early,p/late" {
		t.Fatalf("replayed %v", got)
	}
}

func TestStreamReplayFromTime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := bus.EnsureEventsStream(ctx, e.js, bus.EventsStreamConfig{}); err != nil {
		t.Fatal(err)
	}
	pub := func(id string) {
		data, err := bus.EncodeS3Events(bus.S3EventOptions{}, bus.ObjectEvent{Bucket: "plates", Key: "incoming/p/" + id + "_red.png", EventName: bus.ObjectCreatedPut, Size: 1, ETag: id})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.js.Publish(ctx, "s3.events.plates", data); err != nil {
			t.Fatal(err)
		}
	}
	pub("a")
	pub("b")
	time.Sleep(50 * time.Millisecond)
	since := time.Now()
	time.Sleep(50 * time.Millisecond)
	for _, id := range []string{"c", "d", "e"} {
		pub(id)
	}
	o := Options{Stream: true, Since: since, NC: e.nc, Logger: quietLogger(), Progress: ProgressOff}
	sum, err := Run(ctx, o)
	if err != nil || sum.Published != 3 || sum.Listed != 3 {
		t.Fatalf("stream replay: %+v, %v", sum, err)
	}
	got, msgs := e.replayed()
	if strings.Join(got, ",") != "p/c,p/d,p/e" || msgs[0].Subject != "s3.replay.plates" {
		t.Fatalf("replayed %v on %s", got, msgs[0].Subject)
	}
	// Resumable like the others: nothing new after the position.
	_ = json.Valid
	if sum, err = Run(ctx, o); err != nil || sum.Published != 3 {
		t.Fatalf("second (new) run: %+v, %v", sum, err)
	}
	if _, err := Run(ctx, Options{Stream: true, NC: e.nc}); err == nil {
		t.Fatal("--stream without --since accepted")
	}
}

// Not on a terminal, progress is structured log lines; a bar on a terminal (forced here).
func TestProgressOutput(t *testing.T) {
	e := newEnv(t)
	for i := range 20 {
		e.upload("p", fmt.Sprintf("s%02d", i))
	}
	var logs strings.Builder
	o := e.opts("s3://plates/incoming/")
	o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	o.Progress, o.ProgressEvery, o.Rate = ProgressAuto, 10*time.Millisecond, 400
	o.Out = &strings.Builder{} // not a terminal: logs
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"msg":"replay progress"`) || !strings.Contains(logs.String(), `"objects_per_s"`) {
		t.Fatalf("no progress lines:\n%s", logs.String())
	}
	var bar strings.Builder
	o.Progress, o.Out, o.Restart, o.Force = ProgressBar, &bar, true, true
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(bar.String(), "objects") {
		t.Fatalf("no bar: %q", bar.String())
	}
}

// Without a digest given, only-stale compares with the current-model fact of the KV bucket.
func TestOnlyStaleUsesCurrentModelFact(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"cur", "old"} {
		e.upload("p", id)
	}
	e.putLabel("p", "cur", "sha256:new")
	e.putLabel("p", "old", "sha256:old")
	ctx := context.Background()
	kv, err := e.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.ModelsBucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, bus.CurrentModelKey, []byte(`{"location":"s3://plates/models/v2/","version":"v2","manifest_digest":"sha256:new"}`)); err != nil {
		t.Fatal(err)
	}
	sum, err := Run(ctx, e.opts("s3://plates/incoming/"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := e.replayed()
	if strings.Join(got, ",") != "p/old" || sum.UpToDate != 1 {
		t.Fatalf("replayed %v, %+v", got, sum)
	}
}
