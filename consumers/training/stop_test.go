package training

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// The coordinator and a worker told to stop before they created their durable consumers stop
// cleanly (nil), as the inference stages do: stopping a service right after it started is not a
// failure.
func TestStopBeforeStartIsClean(t *testing.T) {
	e := newEnv(t)
	c, err := NewCoordinator(context.Background(), testConfig(e, t), e.nc, e.js, e.store, e.log)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWorker(context.Background(), WorkerConfig{Name: "w", CacheDir: filepath.Join(e.dir, "w"), Torch: torchLib(t),
		Workers: 1, AckWait: 3 * time.Second}, e.js, e.store, e.log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Errorf("coordinator stopped before it started: %v, want nil", err)
	}
	if err := w.Run(ctx); err != nil {
		t.Errorf("worker stopped before it started: %v, want nil", err)
	}
}
