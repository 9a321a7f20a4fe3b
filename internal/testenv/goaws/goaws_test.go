package goaws

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// The adapter carries every call the bridge makes through aws-sdk-go-v2 to goaws and back.
func TestSDKThroughAdapter(t *testing.T) {
	s := Start(t, Queue{Name: "events", VisibilityTimeout: 1, DeadLetter: "events-dlq", MaxReceiveCount: 2}, Queue{Name: "events-dlq"})
	c := s.Client()
	ctx := context.Background()
	u, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("events")})
	if err != nil {
		t.Fatal(err)
	}
	q := aws.ToString(u.QueueUrl)
	// goaws names the region in the host; it finds queues by the last path segment.
	if !strings.HasSuffix(q, "/"+AccountID+"/events") {
		t.Fatalf("queue URL %s", q)
	}
	body := `{"Records":[{"s3":{"object":{"key":"incoming/plate+%C3%A9/a b_red.png"}}}]}`
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &q, MessageBody: &body}); err != nil {
		t.Fatal(err)
	}
	var entries []types.SendMessageBatchRequestEntry
	for i := range 3 {
		entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), MessageBody: aws.String(fmt.Sprint("m", i))})
	}
	sb, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &q, Entries: entries})
	if err != nil || len(sb.Successful) != 3 {
		t.Fatalf("send batch: %v, %+v", err, sb)
	}
	if vis, _, err := s.Count(ctx, q); err != nil || vis != 4 {
		t.Fatalf("count %d, %v", vis, err)
	}
	r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount}})
	if err != nil || len(r.Messages) != 4 {
		t.Fatalf("receive: %v, %d messages", err, len(r.Messages))
	}
	if aws.ToString(r.Messages[0].Body) != body {
		t.Fatalf("body %q", aws.ToString(r.Messages[0].Body))
	}
	// Delete two in a batch, one alone; keep one in flight with a longer visibility.
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &q, ReceiptHandle: r.Messages[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	db, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &q, Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("a"), ReceiptHandle: r.Messages[1].ReceiptHandle}, {Id: aws.String("b"), ReceiptHandle: r.Messages[2].ReceiptHandle}}})
	if err != nil || len(db.Successful) != 2 || len(db.Failed) != 0 {
		t.Fatalf("delete batch: %v, %+v", err, db)
	}
	if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &q, ReceiptHandle: r.Messages[3].ReceiptHandle, VisibilityTimeout: 3}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if vis, inflight, err := s.Count(ctx, q); err != nil || vis != 0 || inflight != 1 {
		t.Fatalf("after extension: visible %d in flight %d, %v", vis, inflight, err)
	}
	// Received twice without a delete: the redrive moves it to the dead-letter queue.
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if vis, _, _ := s.Count(ctx, s.QueueURL("events-dlq")); vis == 1 {
			break
		}
		_, _ = c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		time.Sleep(200 * time.Millisecond)
	}
	if vis, _, _ := s.Count(ctx, s.QueueURL("events-dlq")); vis != 1 {
		t.Fatalf("dead-letter queue holds %d", vis)
	}
	// Errors come back as SDK API errors.
	_, err = c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() == "" {
		t.Fatalf("missing queue: %v", err)
	}
}
