package bus

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/local/natsembed"
)

func TestTopologyDefaultsAndSubjects(t *testing.T) {
	var top Topology
	top.ReadySubject = "custom.ready"
	top.Fill()
	if top.EventsStream != EventsStream || top.ReadySubject != "custom.ready" || top.LabelConsumer != LabelConsumer ||
		len(top.EventsSubjects) != 1 || top.EventsSubjects[0] != "s3.events.>" || top.LocksBucket != LocksBucket {
		t.Errorf("filled topology %+v", top)
	}
	if got := top.ReadySubjectOf("plate 1"); !strings.HasPrefix(got, "custom.ready.plate_1-") || strings.Count(got, ".") != 2 {
		t.Errorf("ready subject %q", got)
	}
	if got := top.DLQSubjectOf(""); got != "hpa.dlq._" {
		t.Errorf("dlq subject without plate %q", got)
	}
	if got := top.LabelsSubjectOf("p7"); got != "hpa.labels.p7" {
		t.Errorf("labels subject %q", got)
	}
	if EventSubject("", "plates") != "s3.events.plates" || EventSubject("x.", "b") != "x.b" {
		t.Error("event subjects")
	}
}

// The message bodies are the bytes the consumer wrote before they had types (maps, sorted keys).
func TestMessageBytes(t *testing.T) {
	lw, _ := json.Marshal(LabelWritten{Plate: "p", SampleID: "s", Key: "labels/p/s.json", ManifestDigest: "sha256:x", Predicted: []int{0, 25}})
	old, _ := json.Marshal(map[string]any{"plate": "p", "sample_id": "s", "key": "labels/p/s.json", "manifest_digest": "sha256:x", "predicted": []int{0, 25}})
	if string(lw) != string(old) {
		t.Errorf("label event\n%s\nwas\n%s", lw, old)
	}
	for _, orig := range [][]byte{[]byte(`{"Records":[]}`), []byte("not json"), nil} {
		dl := NewDeadLetter("p", "s", "corrupt", "bad\nsecond line", "incoming/p/s_red.png", orig)
		m := dl.Msg(DefaultTopology())
		want, _ := json.Marshal(map[string]any{"plate": "p", "sample_id": "s", "kind": "corrupt", "reason": "bad\nsecond line",
			"object": "incoming/p/s_red.png", "original": json.RawMessage(validJSONOrString(orig))})
		if string(m.Data) != string(want) {
			t.Errorf("dead letter\n%s\nwas\n%s", m.Data, want)
		}
		if m.Subject != "hpa.dlq.p" || m.Header.Get(HeaderErrorKind) != "corrupt" || m.Header.Get(HeaderErrorReason) != "bad" {
			t.Errorf("dead letter message %s %v", m.Subject, m.Header)
		}
	}
	for in, want := range map[string]string{"s3://m/v2/": "s3://m/v2/", ` {"location":"a"} `: "a", `{"manifest":"b/manifest.json"}`: "b/manifest.json", "  c \n": "c", `{}`: ""} {
		if got := ParsePromotion([]byte(in)).Location; got != want {
			t.Errorf("promotion %q: %q, want %q", in, got, want)
		}
	}
	r := SampleReady{Plate: "p", ID: "s", Content: "abc"}
	if r.MsgID("sha256:d") != "p/s/sha256:d/abc" {
		t.Errorf("msg id %s", r.MsgID("sha256:d"))
	}
}

func TestCaptures(t *testing.T) {
	for _, c := range []struct {
		s, p string
		ok   bool
	}{
		{"s3.events.>", "s3.events.>", true}, {">", "s3.events.>", true}, {"s3.>", "s3.events.>", true},
		{"s3.events.*", "s3.events.>", true}, {"s3.events.plates", "s3.events.>", false}, {"other.>", "s3.events.>", false},
		{"s3.events", "s3.events.>", false}, {"*.events.>", "s3.events.>", true},
	} {
		if got := captures(c.s, c.p); got != c.ok {
			t.Errorf("captures(%q, %q) = %v", c.s, c.p, got)
		}
	}
}

func startJS(t *testing.T, o natsembed.Options) *natsembed.Server {
	t.Helper()
	o.DataDir, o.JetStream = filepath.Join(t.TempDir(), "nats"), true
	ns, err := natsembed.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func TestEnsureEventsStream(t *testing.T) {
	ns := startJS(t, natsembed.Options{})
	nc, err := Connect(Config{URL: ns.ClientURL()}, "bus-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := EnsureEventsStream(ctx, js, EventsStreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Name != EventsStream || len(c.Subjects) != 1 || c.Subjects[0] != "s3.events.>" || c.Retention != jetstream.LimitsPolicy ||
		c.Duplicates != DefaultEventsDuplicates || c.Storage != jetstream.FileStorage {
		t.Errorf("created %+v", c)
	}
	// Existing: used as it is; a publisher's subject it does not capture is an error.
	if _, err := EnsureEventsStream(ctx, js, EventsStreamConfig{Subjects: []string{"other.>"}}); err != nil {
		t.Errorf("existing stream: %v", err)
	}
	if _, err := EnsureEventsStream(ctx, js, EventsStreamConfig{MustCapture: "minio.events.>"}); !errors.Is(err, ErrStreamSubjects) {
		t.Errorf("stream not capturing the publisher's subject: %v", err)
	}
	if _, err := EnsureEventsStream(ctx, js, EventsStreamConfig{MustCapture: "s3.events.>"}); err != nil {
		t.Errorf("capturing stream refused: %v", err)
	}
	top := DefaultTopology()
	if err := EnsureReadyStream(ctx, js, top, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := EnsureDLQStream(ctx, js, top); err != nil {
		t.Fatal(err)
	}
	rs, _ := js.Stream(ctx, ReadyStream)
	ri, _ := rs.Info(ctx)
	if ri.Config.Retention != jetstream.WorkQueuePolicy || ri.Config.Duplicates != time.Minute {
		t.Errorf("ready stream %+v", ri.Config)
	}
	if err := PublishDeadLetter(ctx, js, top, NewDeadLetter("", "", "event", "unparsable", "", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	ds, _ := js.Stream(ctx, DLQStream)
	if m, err := ds.GetLastMsgForSubject(ctx, "hpa.dlq._"); err != nil || !strings.Contains(string(m.Data), `"original":"x"`) {
		t.Errorf("dead letter stored: %v", err)
	}
}

func TestConnectOptions(t *testing.T) {
	if _, err := Connect(Config{URL: "nats://127.0.0.1:1", TLSCert: "c.pem"}, "x", nil); !errors.Is(err, ErrTLSPair) {
		t.Errorf("cert without key: %v", err)
	}
	_, err := Connect(Config{URL: "nats://user:hunter2@127.0.0.1:1"}, "x", nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Errorf("unreachable server: %v", err)
	}
	if _, err := Connect(Config{URL: "nats://127.0.0.1:1", Creds: filepath.Join(t.TempDir(), "missing.creds")}, "x", nil); err == nil || !strings.Contains(err.Error(), "credentials file") {
		t.Errorf("missing creds: %v", err)
	}
	if got := RedactURL("nats://a:b@h1:4222,nats://h2:4222"); got != "nats://[REDACTED]@h1:4222,nats://h2:4222" {
		t.Errorf("redact %q", got)
	}
	// A token reaches the server.
	ns := startJS(t, natsembed.Options{})
	nc, err := Connect(Config{URL: ns.ClientURL(), Token: "tok"}, "tok-client", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.Opts.Token != "tok" || nc.Opts.Name != "tok-client" || nc.Opts.MaxReconnect != -1 {
		t.Errorf("options %+v", nc.Opts)
	}
}

// nats.replicas: on one server a stream asking for 3 replicas is refused with an error naming the
// setting; on a 3-node cluster EnsureStream and EnsureKeyValue create with the replicas, raise an
// existing R1 stream or bucket, and never lower one.
func TestEnsureReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	single := startJS(t, natsembed.Options{})
	nc1, err := Connect(Config{URL: single.ClientURL()}, "bus-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc1.Close()
	js1, _ := jetstream.New(nc1)
	_, err = EnsureStream(ctx, js1, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}, Replicas: 3})
	if err == nil || !strings.Contains(err.Error(), "nats.replicas is 3") {
		t.Errorf("R3 on one server: %v", err)
	}
	if st, err := EnsureStream(ctx, js1, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}}); err != nil || st.CachedInfo().Config.Replicas != 1 {
		t.Errorf("default replicas on one server: %v", err)
	}

	c, err := natsembed.StartCluster(3, natsembed.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	nc, err := Connect(Config{URL: c.ClientURLs()}, "bus-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	replicas := func(name string) int {
		t.Helper()
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.Config.Replicas
	}
	top := DefaultTopology()
	top.Replicas = 3
	if err := EnsureReadyStream(ctx, js, top, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := replicas(ReadyStream); n != 3 {
		t.Errorf("ready stream replicas %d, want 3", n)
	}
	// An R1 stream made by an older deployment is raised; a smaller setting does not lower it.
	if _, err := EnsureEventsStream(ctx, js, EventsStreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if n := replicas(EventsStream); n != 1 {
		t.Errorf("events stream replicas %d, want 1", n)
	}
	if _, err := EnsureEventsStream(ctx, js, EventsStreamConfig{Replicas: 3, MustCapture: "s3.events.>"}); err != nil {
		t.Fatal(err)
	}
	if n := replicas(EventsStream); n != 3 {
		t.Errorf("events stream replicas %d after raising, want 3", n)
	}
	if _, err := EnsureStream(ctx, js, jetstream.StreamConfig{Name: EventsStream, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	if n := replicas(EventsStream); n != 3 {
		t.Errorf("events stream lowered to %d", n)
	}
	// KV: created with the replicas, raised, never lowered; other settings still updated.
	if _, err := EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "kv1"}); err != nil {
		t.Fatal(err)
	}
	if n := replicas("KV_kv1"); n != 1 {
		t.Errorf("kv replicas %d, want 1", n)
	}
	if _, err := EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "kv1", Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if n := replicas("KV_kv1"); n != 3 {
		t.Errorf("kv replicas %d after raising, want 3", n)
	}
	kv, err := EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "kv1", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if n := replicas("KV_kv1"); n != 3 {
		t.Errorf("kv lowered to %d", n)
	}
	if st, err := kv.Status(ctx); err != nil || st.TTL() != time.Hour {
		t.Errorf("kv TTL not updated: %v", err)
	}
}
