package natsembed

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Three nodes with routes: an R3 stream keeps every message when its leader stops (cleanly, or
// crashing: cut off with no handover), the two others elect a new leader, and a node stays closed
// to clients without credentials.
func TestClusterR3SurvivesLeaderLoss(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := "shutdown"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) { testClusterLeaderLoss(t, crash) })
	}
}

func testClusterLeaderLoss(t *testing.T, crash bool) {
	c, err := StartCluster(3, Options{DataDir: t.TempDir(), User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	if len(c.Servers) != 3 {
		t.Fatalf("%d servers", len(c.Servers))
	}
	if _, err := nats.Connect(c.Servers[1].ClientURL(), nats.MaxReconnects(0)); err == nil {
		t.Fatal("cluster node accepts a client without credentials")
	}
	nc, err := nats.Connect(c.ClientURLs(), nats.UserInfo("u", "p"), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := js.Publish(ctx, "r3.x", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("cluster info %+v", info.Cluster)
	}
	old := info.Cluster.Leader
	leader := c.Server(old)
	if leader == nil {
		t.Fatalf("leader %q is not a node of the cluster", old)
	}
	if err := c.Crash("nope"); err == nil {
		t.Error("crash of an unknown node")
	}
	lost := time.Now()
	if crash {
		if err := c.Crash(old); err != nil {
			t.Fatal(err)
		}
	} else {
		leader.Shutdown()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Each request gets its own deadline: one sent to the dying node is never answered.
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		info, err = st.Info(rctx)
		rcancel()
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader after %s stopped: %v %+v", old, err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("new leader %s after %s", info.Cluster.Leader, time.Since(lost).Round(time.Millisecond))
	if info.State.Msgs != 20 {
		t.Fatalf("%d messages after the leader change, want 20", info.State.Msgs)
	}
	if _, err := js.Publish(ctx, "r3.x", []byte("after")); err != nil {
		t.Fatalf("publish after the leader change: %v", err)
	}
}

func TestStartClusterBadOptions(t *testing.T) {
	if _, err := StartCluster(0, Options{DataDir: t.TempDir()}); err == nil {
		t.Error("0 servers accepted")
	}
	if _, err := StartCluster(3, Options{}); err == nil {
		t.Error("no DataDir accepted")
	}
	if _, err := Start(Options{Routes: []string{"nats-route://127.0.0.1:1"}}); err == nil {
		t.Error("routes without a cluster name accepted")
	}
	if _, err := StartCluster(1, Options{DataDir: t.TempDir()}); err == nil {
		t.Error("1 server accepted (JetStream does not cluster without routes)")
	}
}

// StartCluster returns once an R3 stream can be placed: the meta leader sees every node online.
// (It once returned as soon as a meta leader existed and every node was current with it, and
// creating an R3 stream right after failed in CI with "no suitable peers for placement, peer
// offline": the leader had not yet received a node's stats.)
func TestStartClusterPlacesR3AtOnce(t *testing.T) {
	for i := range 5 {
		c, err := StartCluster(3, Options{DataDir: t.TempDir(), User: "u", Password: "p"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range c.Servers {
			if s.ns.JetStreamIsLeader() {
				if peers := s.ns.JetStreamClusterPeers(); len(peers) != 3 {
					t.Errorf("start %d: the meta leader sees %v online, want all 3 nodes", i, peers)
				}
			}
		}
		nc, err := nats.Connect(c.ClientURLs(), nats.UserInfo("u", "p"))
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}); err != nil {
			t.Errorf("start %d: R3 stream right after StartCluster: %v", i, err)
		}
		cancel()
		nc.Close()
		c.Shutdown()
	}
}
