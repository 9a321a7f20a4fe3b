package bridge

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/hpa-plates/hpa/internal/testenv/goaws"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

// BenchmarkBridge moves 5,000 S3 notifications (one record each, as S3 sends them to SQS) from goaws
// to JetStream with the bridge, and in the same run drains the same number of messages with a bare
// SQS receive+delete loop (same pollers, same batch size, nothing published): records/s of both
// and their ratio. Goal: >= 5,000 records/s, limited by SQS (ratio near 1), not by the bridge.
func BenchmarkBridge(b *testing.B) {
	s := goaws.Start(b, goaws.Queue{Name: "events", VisibilityTimeout: 30}, goaws.Queue{Name: "bare", VisibilityTimeout: 30})
	_, nc, _ := servers.JetStream(b, "")
	c := s.Client()
	ctx := context.Background()
	const n = 5000
	const pollers = 4
	fill := func(q string, offset int) {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w * 10; i < n; i += 40 {
					var es []types.SendMessageBatchRequestEntry
					for j := i; j < i+10; j++ {
						es = append(es, types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(recordBody(b, offset+j))})
					}
					if _, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q), Entries: es}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	drained := func(q string) bool { v, f, _ := s.Count(ctx, q); return v == 0 && f == 0 }
	var bridgeRate, bareRate float64
	round := 0
	for b.Loop() {
		round++
		// The bridge.
		q := s.QueueURL("events")
		fill(q, round*n)
		br, err := New(ctx, Options{QueueURL: q, SQS: c, NC: nc, Pollers: pollers, WaitTime: time.Second, Logger: quiet()})
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		t0 := time.Now()
		done := make(chan error, 1)
		go func() { done <- br.Run(rctx) }()
		for !drained(q) {
			time.Sleep(5 * time.Millisecond)
		}
		bridgeRate = n / time.Since(t0).Seconds()
		cancel()
		<-done
		if got := counterValue(b, br, "hpa_bridge_records_published_total"); got != n {
			b.Fatalf("published %v of %d", got, n)
		}
		// The bare loop on a queue of the same messages.
		q = s.QueueURL("bare")
		fill(q, round*n)
		t0 = time.Now()
		var wg sync.WaitGroup
		for range pollers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q, MaxNumberOfMessages: 10, WaitTimeSeconds: 0})
					if err != nil {
						b.Error(err)
						return
					}
					if len(out.Messages) == 0 {
						if drained(q) {
							return
						}
						continue
					}
					var es []types.DeleteMessageBatchRequestEntry
					for i, m := range out.Messages {
						es = append(es, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
					}
					if _, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &q, Entries: es}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		bareRate = n / time.Since(t0).Seconds()
	}
	b.ReportMetric(bridgeRate, "records/s")
	b.ReportMetric(bareRate, "bare-sqs-msgs/s")
	b.ReportMetric(bridgeRate/bareRate, "ratio")
	b.Logf("bridge: %.0f records/s from goaws to JetStream; bare SQS receive+delete loop: %.0f messages/s; ratio %.2f (goal >= 5000 records/s)",
		bridgeRate, bareRate, bridgeRate/bareRate)
}
