package inference

import (
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
