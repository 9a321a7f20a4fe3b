package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/testenv/goaws"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

// An `hpa bridge` process killed with SIGKILL in the middle of a load and started again loses no
// record and duplicates none: the events stream holds every record exactly once (JetStream drops
// the republished records of messages that were published but not yet deleted at the kill, so
// each sample is labeled once). A SIGTERM drains: the process exits 0 after its batches.
func TestBridgeProcessKilledAndRestarted(t *testing.T) {
	s := goaws.Start(t, goaws.Queue{Name: "events", VisibilityTimeout: 2})
	ns, _, js := servers.JetStream(t, filepath.Join(t.TempDir(), "nats"))
	t.Setenv("AWS_ACCESS_KEY_ID", "goaws")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "goaws")
	ctx := context.Background()
	q := s.QueueURL("events")
	const n = 1500
	c := s.Client()
	for i := 0; i < n; i += 10 {
		var es []types.SendMessageBatchRequestEntry
		for j := i; j < i+10; j++ {
			b, err := bus.EncodeS3Events(bus.S3EventOptions{}, bus.ObjectEvent{Bucket: "plates", EventName: bus.ObjectCreatedPut,
				Key:  fmt.Sprintf("incoming/plate 1/s%05d_%s.png", j/4, []string{"red", "green", "blue", "yellow"}[j%4]),
				Size: 100, ETag: fmt.Sprintf("etag%d", j), Sequencer: fmt.Sprintf("%016X", j)})
			if err != nil {
				t.Fatal(err)
			}
			es = append(es, types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(string(b))})
		}
		if _, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &q, Entries: es}); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"bridge", "--sqs-queue-url", q, "--sqs-endpoint", s.Endpoint(), "--sqs-region", goaws.Region,
		"--nats-url", ns.ClientURL(), "--metrics-addr", "", "--wait-time", "1s", "--visibility", "2s", "--pollers", "4"}
	left := func() int {
		v, f, err := s.Count(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return v + f
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(120 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out: %s (queue holds %d)", what, left())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cmd, out := startHelper(t, args...)
	wait("a third deleted", func() bool { return left() <= n*2/3 })
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	killedAt := left()
	if killedAt == 0 {
		t.Fatal("the bridge finished before the kill")
	}
	t.Logf("killed with %d of %d messages left", killedAt, n)
	// Restart, then stop it gracefully half way.
	cmd, out = startHelper(t, args...)
	wait("half of the rest", func() bool { return left() <= killedAt/2 })
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "bridge stopped") {
		t.Fatalf("no drain log:\n%s", out)
	}
	cmd, out = startHelper(t, args...)
	wait("queue drained", func() bool { return left() == 0 })
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	st, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		seen[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	if info.State.Msgs != n || len(seen) != n {
		t.Fatalf("events stream holds %d messages, %d distinct records; want %d of each", info.State.Msgs, len(seen), n)
	}
}
