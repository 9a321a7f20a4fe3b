package inference

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
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

// clusterStallBound is the longest time without a sample labeled the test accepts around the loss
// of a stream leader: the election (NATS raft: 4-9 s election timeout after a crash, about a
// second after a clean stepdown), the clients' reconnect and the pull consumers' reissued pull
// requests (two missed 1 s heartbeats, pull.go), with room for a loaded 2-core machine under
// -race. With the library's default 15 s heartbeats a crash stalled labeling 31 s.
const clusterStallBound = 20 * time.Second

// The service on a 3-node JetStream cluster (routes, R3 streams and KV buckets through
// nats.replicas): a steady stream of uploads is labeled while the server leading the ready
// stream goes away in the middle of the load, either stopping cleanly (it hands its leaderships
// over) or crashing (cut off at once, no handover: the others notice and elect). The two others
// elect a new leader, every sample is labeled exactly once with the right prediction, and the
// time without progress stays within the bound.
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

	const n = 40
	p := makePlate("pc", n, 32, 21)
	labeled := func() int { return int(counter(t, svc, "hpa_inference_samples_labeled_total", nil)) }

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
	go func() {
		for i, id := range p.ids {
			if i == n/2 {
				info, err := streamInfo(ctx, svcJS, cfg.ReadyStream)
				if err != nil || info.Cluster == nil || c.Server(info.Cluster.Leader) == nil {
					uploadErr <- fmt.Errorf("ready stream leader: %+v %v", info, err)
					return
				}
				killedName = info.Cluster.Leader
				killed = time.Now()
				if crash {
					if err := c.Crash(killedName); err != nil {
						uploadErr <- err
						return
					}
				} else {
					c.Server(killedName).Shutdown()
				}
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
	waitFor(t, 90*time.Second, "every sample labeled after the leader loss", func() bool { return labeled() >= n })
	time.Sleep(300 * time.Millisecond) // a duplicate would show up now
	close(stopWatch)
	<-watchDone
	total := time.Since(start)

	info, err := streamInfo(ctx, svcJS, cfg.ReadyStream)
	if err != nil || info.Cluster == nil {
		t.Fatalf("ready stream after the loss: %v", err)
	}
	newLeader = info.Cluster.Leader
	if newLeader == "" || newLeader == killedName {
		t.Fatalf("no new leader of %s (was %s, now %q)", cfg.ReadyStream, killedName, newLeader)
	}
	if got := labeled(); got != n {
		t.Errorf("%d label writes for %d samples: not exactly once", got, n)
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
	t.Logf("3-node cluster, %d samples in %s: leader %s of %s %s after %s; new leader %s; stall %s (bound %s); "+
		"reprocessed without a rewrite %v, naks %v",
		n, total.Round(time.Millisecond), killedName, cfg.ReadyStream, how, killed.Sub(start).Round(time.Millisecond), newLeader,
		stall.Round(time.Millisecond), clusterStallBound,
		counter(t, svc, "hpa_inference_samples_unchanged_total", nil), counter(t, svc, "hpa_inference_naks_total", nil))
	if stall > clusterStallBound {
		t.Errorf("labeling stalled %s after the leader loss, more than %s", stall.Round(time.Millisecond), clusterStallBound)
	}
}

func streamInfo(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return st.Info(ctx)
}
