package inference

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Pull requests of the durable consumers (assembler and labeler) last pullExpiry, and the server
// sends an idle heartbeat every pullHeartbeat while one waits. A pull request parked on a NATS
// server that crashed (a stream or consumer leader of a cluster gone with no "leadership change"
// status, the client connected to another node) is noticed after two missed heartbeats and
// reissued to the new leader: about 2 s instead of the library's 30 s (15 s heartbeats of 30 s
// pulls). TestClusterStreamLeaderLoss measures the stall.
const (
	pullExpiry    = 10 * time.Second
	pullHeartbeat = time.Second
)

func pullOptions() []jetstream.PullMessagesOpt {
	return []jetstream.PullMessagesOpt{jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat)}
}

// consumer looks up a durable consumer for a stage. A lookup that fails for a transient reason
// (the JetStream API timing out while a cluster elects the consumer's or the meta leader) is
// retried with backoff until ctx ends; a consumer or stream that does not exist is an error at
// once (the stage stops the replica with it).
func (s *Service) consumer(ctx context.Context, stream, name string) (jetstream.Consumer, error) {
	wait := 100 * time.Millisecond
	for {
		c, err := s.js.Consumer(ctx, stream, name)
		if err == nil || errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
			ctx.Err() != nil {
			return c, err
		}
		s.log.Warn("durable consumer lookup failed; retrying", "stream", stream, "consumer", name, "err", err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
