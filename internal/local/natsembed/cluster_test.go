package natsembed

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Three nodes with routes: an R3 stream keeps every message when its leader stops, the two
// others elect a new leader, and a node stays closed to clients and routes without credentials.
func TestClusterR3SurvivesLeaderLoss(t *testing.T) {
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
	leader.Shutdown()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err = st.Info(ctx)
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader after %s stopped: %v %+v", old, err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
}
