package inference

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/hpa-plates/hpa/internal/labeling"
)

// priorityInput merges the live and the replay inputs of the labeler so that live uploads are
// never queued behind a backfill: a replayed sample is handed out only when no live one is
// waiting; while no live sample is in the pipeline (fetch, batch, model, write) at most limit
// replayed samples are, and while live ones are at most one (a minimal share: the backfill
// still advances under steady live traffic, riding along in live batches). A live sample
// arriving during a replay therefore waits for at most one batch of replayed samples ahead of it,
// and live samples arriving while live work is in flight for at most one replayed sample
// (BenchmarkLiveLatencyDuringReplay measures it).
type priorityInput struct {
	live, replay chan readResult
	slots        chan struct{} // replayed samples in the pipeline
	freed        chan struct{}
	liveIn       atomic.Int64 // live samples in the pipeline
	liveDone     bool
	replayDone   bool
}

type readResult struct {
	m   labeling.Message
	ack labeling.AckFunc
	err error
}

func newPriorityInput(ctx context.Context, live, replay labeling.Input, limit int) *priorityInput {
	p := &priorityInput{live: make(chan readResult), replay: make(chan readResult),
		slots: make(chan struct{}, max(limit, 1)), freed: make(chan struct{}, 1)}
	pump := func(in labeling.Input, out chan<- readResult) {
		for {
			m, ack, err := in.Read(ctx)
			out <- readResult{m, ack, err}
			if err != nil {
				return
			}
		}
	}
	go pump(live, p.live)
	go pump(replay, p.replay)
	return p
}

// Read implements labeling.Input: ErrEndOfInput once both inputs ended, the first other error of
// either.
func (p *priorityInput) Read(ctx context.Context) (labeling.Message, labeling.AckFunc, error) {
	for {
		if p.liveDone && p.replayDone {
			return labeling.Message{}, nil, labeling.ErrEndOfInput
		}
		var r readResult
		var isReplay bool
		select {
		case r = <-p.live:
		default:
			var replayC <-chan readResult
			limit := cap(p.slots)
			if p.liveIn.Load() > 0 {
				limit = 1
			}
			if !p.replayDone && len(p.slots) < limit {
				replayC = p.replay
			}
			var liveC <-chan readResult
			if !p.liveDone {
				liveC = p.live
			}
			select {
			case r = <-liveC:
			case r = <-replayC:
				isReplay = true
			case <-p.freed:
				continue
			}
		}
		if r.err != nil {
			if !errors.Is(r.err, labeling.ErrEndOfInput) {
				return labeling.Message{}, nil, r.err
			}
			if isReplay {
				p.replayDone = true
			} else {
				p.liveDone = true
			}
			continue
		}
		if !isReplay {
			p.liveIn.Add(1)
			ack := r.ack
			return r.m, func(ctx context.Context, err error) {
				ack(ctx, err)
				if p.liveIn.Add(-1) == 0 {
					select {
					case p.freed <- struct{}{}:
					default:
					}
				}
			}, nil
		}
		p.slots <- struct{}{}
		ack := r.ack
		return r.m, func(ctx context.Context, err error) {
			ack(ctx, err)
			<-p.slots
			select {
			case p.freed <- struct{}{}:
			default:
			}
		}, nil
	}
}
