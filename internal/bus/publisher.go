package bus

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Publisher delivers one message and returns once the bus has durably accepted it (for JetStream:
// once the PubAck came back). msgID identifies the message; a bus that deduplicates on it
// (JetStream's Nats-Msg-Id) makes repeated deliveries harmless. Every producer publishes events
// through one.
type Publisher interface {
	Publish(ctx context.Context, subject string, data []byte, msgID string) error
}

// JetStreamPublisher publishes with Nats-Msg-Id and waits for the PubAck.
type JetStreamPublisher struct {
	JS jetstream.JetStream
}

// Publish implements Publisher.
func (p JetStreamPublisher) Publish(ctx context.Context, subject string, data []byte, msgID string) error {
	_, err := p.JS.Publish(ctx, subject, data, jetstream.WithMsgID(msgID))
	return err
}
