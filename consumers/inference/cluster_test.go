package inference

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/local/natsembed"
	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

// clusterStallSlack is how much longer than the election labeling may stand still around the loss
// of the leader node: the elections themselves (NATS raft: 4-9 s election timeout after a crash,
// about a second after a clean stepdown) are measured, and on top of them the clients reconnect,
// the pull consumers reissue their pulls (two missed 1 s heartbeats, pull.go) and the backlog
// starts moving. With the library's default 15 s heartbeats a crash stalled labeling 31 s.
const clusterStallSlack = 6 * time.Second

// The service on a 3-node JetStream cluster (routes, R3 streams and KV buckets through
// nats.replicas): a steady stream of uploads is labeled while the server leading the ready
// stream goes away in the middle of the load, either stopping cleanly (it hands its leaderships
// over) or crashing (cut off at once, no handover: the others notice and elect). The two others
// elect a new leader, every sample is labeled exactly once (one label write, the right
// prediction), and the time without progress stays within the bound.
func TestClusterStreamLeaderLoss(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := "shutdown"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) { testClusterLeaderLoss(t, crash) })
	}
}

func testClusterLeaderLoss(t *testing.T, crash bool) {
	const user, password = "hpa", "cluster-test-password"
	c, err := natsembed.StartCluster(3, natsembed.Options{DataDir: filepath.Join(t.TempDir(), "nats"), User: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// Every client connects with the real connect options (reconnect forever) and the cluster's
	// URLs, as `hpa inference` does with nats.url "nats://a:4222,nats://b:4222,nats://c:4222".
	bc := bus.Config{URL: c.ClientURLs(), User: user, Password: password}
	connect := func(name string) jetstream.JetStream {
		nc, err := bus.Connect(bc, name, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	pubJS := connect("s3-events")
	if _, err := bus.EnsureEventsStream(ctx, pubJS, bus.EventsStreamConfig{Name: "S3_EVENTS", Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv := servers.S3(t, s3local.Options{Dir: filepath.Join(dir, "s3"), AccessKey: testAK, SecretKey: testSK,
		Buckets: []string{testBucket}, Publisher: bus.JetStreamPublisher{JS: pubJS}, PublishTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	store, err := objstore.Open(ctx, objstore.Config{Endpoint: srv.Endpoint(), Region: "us-east-1", PathStyle: true,
		Bucket: testBucket, AccessKey: testAK, SecretKey: testSK})
	if err != nil {
		t.Fatal(err)
	}
	svcJS := connect("inference")
	e := &testEnv{t: t, nc: svcJS.Conn(), js: svcJS, s3: srv, store: store}
	m := newFakeModel("A", 0.3)
	cfg := testConfig()
	cfg.Replicas = 3
	svc, _ := e.startService(cfg, loaderOf(map[string]*fakeModel{"A": m}), "A")

	// Every stream and bucket of the service has three replicas.
	for _, name := range []string{"S3_EVENTS", cfg.ReadyStream, cfg.DLQStream, "KV_" + cfg.SamplesBucket, "KV_" + cfg.PlatesBucket, "KV_" + cfg.LocksBucket} {
		st, err := svcJS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if info, err := st.Info(ctx); err != nil || info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Fatalf("stream %s: replicas %+v %v", name, info, err)
		}
	}

	// The worst case: one node leads everything the service works through (both streams, the
	// samples bucket, both durable consumers), so its loss stops intake and labeling at once.
	info, err := streamInfo(ctx, svcJS, cfg.ReadyStream)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("ready stream leader: %+v %v", info, err)
	}
	target := info.Cluster.Leader
	// The stages are pulling before leaderships move.
	for _, sc := range [][2]string{{"S3_EVENTS", cfg.EventsConsumer}, {cfg.ReadyStream, cfg.LabelConsumer}} {
		waitFor(t, 30*time.Second, sc[1]+" pulling", func() bool {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			c, err := svcJS.Consumer(rctx, sc[0], sc[1])
			if err != nil {
				return false
			}
			ci, err := c.Info(rctx)
			return err == nil && ci.NumWaiting > 0
		})
	}
	groups := []raftGroup{{"events stream", "S3_EVENTS", ""}, {"samples bucket", "KV_" + cfg.SamplesBucket, ""},
		{"events consumer", "S3_EVENTS", cfg.EventsConsumer}, {"label consumer", cfg.ReadyStream, cfg.LabelConsumer}}
	for _, g := range groups {
		if err := leadOn(ctx, svcJS, g.stream, g.consumer, target); err != nil {
			t.Fatalf("%s: %v", g.what, err)
		}
	}
	groups = append(groups, raftGroup{"ready stream", cfg.ReadyStream, ""})

	const n = 24
	p := makePlate("pc", n, 32, 21)
	// Progress is a label written, or one found already written by a redelivery (its first
	// attempt's PUT stored the label but the answer or the acknowledgement was lost in the
	// election: the S3 server announces every object on the bus, labels too). One sample can count
	// twice, so the end of the run is decided by the labels in the bucket (labelsIn below).
	written := func() int { return int(counter(t, svc, "hpa_inference_samples_labeled_total", nil)) }
	labeled := func() int { return written() + int(counter(t, svc, "hpa_inference_samples_unchanged_total", nil)) }

	// Progress: the times at which the labeled count grew.
	var mu sync.Mutex
	var progress []time.Time
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		last := 0
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if k := labeled(); k > last {
				last = k
				mu.Lock()
				progress = append(progress, time.Now())
				mu.Unlock()
			}
		}
	}()

	// Steady load: one sample every 40 ms; the leader of the ready stream stops halfway.
	start := time.Now()
	var killed time.Time
	var killedName, newLeader string
	uploadErr := make(chan error, 1)
	elected := make(chan time.Time, 1)
	go func() {
		for i, id := range p.ids {
			if i == n/2 {
				killedName = target
				killed = time.Now()
				if crash {
					if err := c.Crash(killedName); err != nil {
						uploadErr <- err
						return
					}
				} else {
					c.Server(killedName).Shutdown()
				}
				go func() { elected <- waitElected(ctx, svcJS, killedName, groups) }()
			}
			for _, ch := range []string{"red", "green", "blue", "yellow"} {
				key := "incoming/pc/" + id + "_" + ch + ".png"
				// While the bus elects, the S3 server answers 503: a client retries, as the SDKs do.
				var err error
				for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					if err = store.Put(ctx, key, p.files[key], "image/png"); err == nil {
						break
					}
				}
				if err != nil {
					uploadErr <- fmt.Errorf("upload %s: %w", key, err)
					return
				}
			}
			time.Sleep(40 * time.Millisecond)
		}
		uploadErr <- nil
	}()
	if err := <-uploadErr; err != nil {
		t.Fatal(err)
	}
	// Done when every sample's label is in the bucket. The counters alone cannot say it: a label
	// written once whose acknowledgement was lost in the election is redelivered and found in
	// place, so one sample can count as written and as unchanged.
	labelsIn := func() int {
		k := 0
		if objs, err := store.List(ctx, "labels/pc/"); err == nil {
			for _, o := range objs {
				if strings.HasSuffix(o.Key, ".json") && !strings.HasSuffix(o.Key, ".error.json") {
					k++
				}
			}
		}
		return k
	}
	for deadline := time.Now().Add(90 * time.Second); labelsIn() < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d labels written 90 s after the leader loss (counted: %d)\n%s", labelsIn(), n, labeled(), clusterState(ctx, t, svc, svcJS, cfg, p))
		}
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would show up now
	close(stopWatch)
	<-watchDone
	total := time.Since(start)

	info, err = streamInfo(ctx, svcJS, cfg.ReadyStream)
	if err != nil || info.Cluster == nil {
		t.Fatalf("ready stream after the loss: %v", err)
	}
	newLeader = info.Cluster.Leader
	if newLeader == "" || newLeader == killedName {
		t.Fatalf("no new leader of %s (was %s, now %q)", cfg.ReadyStream, killedName, newLeader)
	}
	// Exactly once: no label is written twice (a second write of a sample counts as written
	// again; a redelivery that finds its label in place counts as unchanged), and every sample
	// has its one, right label.
	if got := written(); got > n {
		t.Errorf("%d label writes for %d samples: some written twice", got, n)
	}
	for _, id := range p.ids {
		e.checkLabel("pc", id, p.imgs[id], m)
	}
	// The stall: the longest time without a new label from the leader loss to the last label.
	mu.Lock()
	stall, prev := time.Duration(0), killed
	for _, at := range progress {
		if at.After(killed) {
			stall = max(stall, at.Sub(prev))
			prev = at
		}
	}
	mu.Unlock()
	how := "stopped"
	if crash {
		how = "crashed"
	}
	var election time.Duration
	select {
	case at := <-elected:
		if at.IsZero() {
			t.Fatal("no new leaders within 60 s of the loss")
		}
		election = at.Sub(killed)
	case <-time.After(60 * time.Second):
		t.Fatal("election watch did not end")
	}
	bound := election + clusterStallSlack
	t.Logf("3-node cluster, %d samples in %s: %s, leader of both streams, the samples bucket and both consumers, %s after %s; "+
		"new leaders of all after %s (%s: %s); stall %s (bound %s); "+
		"label writes %d, redeliveries that found their label in place %v, naks %v",
		n, total.Round(time.Millisecond), killedName, how, killed.Sub(start).Round(time.Millisecond), election.Round(time.Millisecond),
		cfg.ReadyStream, newLeader, stall.Round(time.Millisecond), bound.Round(time.Millisecond),
		written(), counter(t, svc, "hpa_inference_samples_unchanged_total", nil), counter(t, svc, "hpa_inference_naks_total", nil))
	if stall > bound {
		t.Errorf("labeling stalled %s after the leader loss, more than the election (%s) + %s", stall.Round(time.Millisecond),
			election.Round(time.Millisecond), clusterStallSlack)
	}
}

func streamInfo(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return st.Info(ctx)
}

// raftGroup is a stream (consumer "") or a durable consumer: one raft group of the cluster.
type raftGroup struct{ what, stream, consumer string }

// leaderOf is the current leader of a stream or consumer ("" when unknown or none).
func leaderOf(ctx context.Context, js jetstream.JetStream, stream, consumer string) string {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if consumer != "" {
		if c, err := js.Consumer(rctx, stream, consumer); err == nil {
			if info, err := c.Info(rctx); err == nil && info.Cluster != nil {
				return info.Cluster.Leader
			}
		}
		return ""
	}
	if info, err := streamInfo(rctx, js, stream); err == nil && info.Cluster != nil {
		return info.Cluster.Leader
	}
	return ""
}

// waitElected returns when every group has a leader other than lost (zero time after 60 s).
func waitElected(ctx context.Context, js jetstream.JetStream, lost string, groups []raftGroup) time.Time {
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		all := true
		for _, g := range groups {
			if l := leaderOf(ctx, js, g.stream, g.consumer); l == "" || l == lost {
				all = false
				break
			}
		}
		if all {
			return time.Now()
		}
	}
	return time.Time{}
}

// leadOn moves the leadership of stream (or of its consumer, when not "") to server: a leader
// stepdown naming the preferred successor, then a wait until the cluster reports it.
func leadOn(ctx context.Context, js jetstream.JetStream, stream, consumer, server string) error {
	subject := "$JS.API.STREAM.LEADER.STEPDOWN." + stream
	if consumer != "" {
		subject = "$JS.API.CONSUMER.LEADER.STEPDOWN." + stream + "." + consumer
	}
	leader := func() string { return leaderOf(ctx, js, stream, consumer) }
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if leader() == server {
			return nil
		}
		req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, server)
		m, err := js.Conn().RequestWithContext(ctx, subject, []byte(req))
		if err != nil {
			continue
		}
		var resp struct {
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return fmt.Errorf("stepdown answer %q: %w", m.Data, err)
		}
		if resp.Error != nil && !strings.Contains(resp.Error.Description, "already leader") {
			return fmt.Errorf("stepdown of %s %s to %s: %s", stream, consumer, server, resp.Error.Description)
		}
		time.Sleep(400 * time.Millisecond) // the election
	}
	return fmt.Errorf("%s %s: leader %q, not %s", stream, consumer, leader(), server)
}

// clusterState describes where the samples are, for a failure message.
func clusterState(ctx context.Context, t *testing.T, svc *Service, js jetstream.JetStream, cfg Config, p *sampleSet) string {
	var b strings.Builder
	for _, name := range []string{"hpa_inference_s3_events_total", "hpa_inference_samples_ready_total", "hpa_inference_naks_total",
		"hpa_inference_errors_total", "hpa_inference_samples_unchanged_total"} {
		fmt.Fprintf(&b, "%s %v\n", name, counter(t, svc, name, nil))
	}
	for _, sc := range [][2]string{{"S3_EVENTS", cfg.EventsConsumer}, {cfg.ReadyStream, cfg.LabelConsumer}} {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if info, err := streamInfo(rctx, js, sc[0]); err == nil {
			fmt.Fprintf(&b, "stream %s: msgs %d, leader %v\n", sc[0], info.State.Msgs, info.Cluster)
		} else {
			fmt.Fprintf(&b, "stream %s: %v\n", sc[0], err)
		}
		if c, err := js.Consumer(rctx, sc[0], sc[1]); err == nil {
			if ci, err := c.Info(rctx); err == nil {
				fmt.Fprintf(&b, "consumer %s: pending %d, ack pending %d, redelivered %d, waiting %d, leader %v\n", sc[1], ci.NumPending,
					ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting, ci.Cluster)
			} else {
				fmt.Fprintf(&b, "consumer %s: %v\n", sc[1], err)
			}
		}
		cancel()
	}
	if dlq, err := streamInfo(ctx, js, cfg.DLQStream); err == nil {
		fmt.Fprintf(&b, "dead letters %d\n", dlq.State.Msgs)
	}
	kv, err := js.KeyValue(ctx, cfg.SamplesBucket)
	for _, id := range p.ids {
		if _, err := svc.store.Get(ctx, "labels/"+p.plate+"/"+id+".json", 0); err == nil {
			continue
		}
		fmt.Fprintf(&b, "no label for %s", id)
		if kv != nil {
			if keys, err := kv.ListKeys(ctx); err == nil {
				for k := range keys.Keys() {
					if strings.Contains(k, id) {
						e, _ := kv.Get(ctx, k)
						if e != nil {
							fmt.Fprintf(&b, "; kv %s = %s", k, e.Value())
						}
					}
				}
			}
		} else {
			fmt.Fprintf(&b, " (samples bucket: %v)", err)
		}
		b.WriteString("\n")
	}
	return b.String()
}
