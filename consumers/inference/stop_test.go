package inference

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A stage that fails stops the whole service with its error at once: with the assembler's (or the
// labeler's) durable consumer deleted, Run returns an error naming it instead of running on with
// the other stage until shutdown.
func TestStageFailureStopsService(t *testing.T) {
	for _, c := range []struct{ name, stream, consumer, want string }{
		{"assembler", "S3_EVENTS", "hpa-assembler", "events consumer hpa-assembler"},
		{"labeler", "HPA_READY", "hpa-labeler", "label consumer hpa-labeler"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			svc, err := New(e.nc, e.store, loaderOf(map[string]*fakeModel{"A": newFakeModel("A", 0.1)}), testConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			if err := svc.Load(context.Background(), "A"); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- svc.Run(ctx) }()
			waitFor(t, 10*time.Second, "consumers", func() bool { return svc.Consuming(context.Background()) })
			// The service works before the failure.
			p := makePlate("ps", 1, 32, 3)
			for _, k := range p.shuffledKeys(1) {
				e.put(k, p.files[k])
			}
			waitFor(t, 20*time.Second, "a label before the failure", func() bool { return len(e.labels.snapshot()) == 1 })
			if err := e.js.DeleteConsumer(context.Background(), c.stream, c.consumer); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("Run returned %v, want an error naming %q", err, c.want)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the service kept running with a failed stage")
			}
		})
	}
}

// A replica told to stop after its Setup but before a stage looked its durable consumer up stops
// cleanly: every stage returns nil (CI once saw `hpa inference` fail with "replay label consumer:
// context canceled" when it was stopped right after start).
func TestStopBeforeStagesStartIsClean(t *testing.T) {
	e := newEnv(t, nil)
	svc, err := New(e.nc, e.store, loaderOf(map[string]*fakeModel{"A": newFakeModel("A", 0.1)}), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := svc.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, stage := range map[string]func(context.Context) error{
		"assembler": svc.runAssembler, "replay assembler": svc.runReplayAssembler, "labeler": svc.runLabeler,
	} {
		if err := stage(ctx); err != nil {
			t.Errorf("%s stopped before it started: %v, want nil", name, err)
		}
	}
}

// A replica told to stop while its Setup is still creating streams and consumers stops cleanly:
// Run returns nil whenever the context ends, before, during or after the set-up (CI once saw
// `hpa inference` fail with "consumer hpa-labeler-replay on HPA_READY_REPLAY: context canceled":
// the consumer existed on the server, so the test stopped the service, while the reply to its
// creation was still on the way).
func TestStopDuringSetupIsClean(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 25 {
		svc, err := New(e.nc, e.store, loaderOf(map[string]*fakeModel{"A": newFakeModel("A", 0.1)}), testConfig())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		delay := time.Duration(max(i-1, 0)) * 200 * time.Microsecond
		if i == 0 {
			cancel() // before the first call
		} else {
			time.AfterFunc(delay, cancel)
		}
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stopped %v after start: Run returned %v, want nil", delay, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("stopped %v after start: Run did not return", delay)
		}
		cancel()
		svc.Close()
	}
}
