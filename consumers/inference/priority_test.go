package inference

import (
	"context"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/labeling"
)

// chanInput hands out the messages sent on its channel; closing it ends the input.
type chanInput chan labeling.Message

func (c chanInput) Read(ctx context.Context) (labeling.Message, labeling.AckFunc, error) {
	select {
	case m, ok := <-c:
		if !ok {
			return labeling.Message{}, nil, labeling.ErrEndOfInput
		}
		return m, func(context.Context, error) {}, nil
	case <-ctx.Done():
		return labeling.Message{}, nil, ctx.Err()
	}
}

func msg(content string) labeling.Message { return labeling.Message{Content: content} }

type readRes struct {
	m   labeling.Message
	ack labeling.AckFunc
}

// reader reads p in one goroutine (Read is not concurrent) and hands out what it reads.
func reader(ctx context.Context, p *priorityInput) <-chan readRes {
	ch := make(chan readRes)
	go func() {
		for {
			m, ack, err := p.Read(ctx)
			if err != nil {
				return
			}
			select {
			case ch <- readRes{m, ack}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// readWithin takes the next message read, or reports that none came within d.
func readWithin(t *testing.T, ch <-chan readRes, d time.Duration) (labeling.Message, labeling.AckFunc, bool) {
	t.Helper()
	select {
	case r := <-ch:
		return r.m, r.ack, true
	case <-time.After(d):
		return labeling.Message{}, nil, false
	}
}

// Without live work a whole batch (limit) of replayed samples may be in the pipeline; while a
// live sample is in it only one; once the live one is acknowledged the limit is back.
func TestPriorityInputBoundsReplayWhileLiveInFlight(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live, replay := make(chanInput), make(chanInput, 100)
	for range 100 {
		replay <- msg("r")
	}
	p := reader(ctx, newPriorityInput(ctx, live, replay, 4))

	var racks []labeling.AckFunc
	for range 4 {
		m, ack, ok := readWithin(t, p, time.Second)
		if !ok || m.Content != "r" {
			t.Fatalf("replayed sample not handed out while idle: %+v %v", m, ok)
		}
		racks = append(racks, ack)
	}
	if _, _, ok := readWithin(t, p, 100*time.Millisecond); ok {
		t.Fatal("more than limit replayed samples in the pipeline")
	}
	go func() { live <- msg("l") }()
	m, lack, ok := readWithin(t, p, time.Second)
	if !ok || m.Content != "l" {
		t.Fatalf("live sample not handed out first: %+v %v", m, ok)
	}
	// A live sample is in flight: replayed ones drain down to one, no new one while two are out.
	for _, a := range racks[:3] {
		a(ctx, nil)
	}
	racks = racks[3:]
	if _, _, ok := readWithin(t, p, 100*time.Millisecond); ok {
		t.Fatal("a second replayed sample handed out while a live one is in the pipeline")
	}
	racks[0](ctx, nil)
	m, ack, ok := readWithin(t, p, time.Second)
	if !ok || m.Content != "r" {
		t.Fatalf("the minimal replay share was not handed out: %+v %v", m, ok)
	}
	if _, _, ok := readWithin(t, p, 100*time.Millisecond); ok {
		t.Fatal("two replayed samples with a live one in the pipeline")
	}
	// The live one acknowledged: up to limit again (one is out, three more).
	lack(ctx, nil)
	for i := range 3 {
		if _, _, ok := readWithin(t, p, time.Second); !ok {
			t.Fatalf("replayed sample %d not handed out after the live one finished", i)
		}
	}
	if _, _, ok := readWithin(t, p, 100*time.Millisecond); ok {
		t.Fatal("more than limit replayed samples after the live one finished")
	}
	ack(ctx, nil)
}
