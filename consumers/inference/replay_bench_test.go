package inference

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/producers/replay"
)

// BenchmarkLiveLatencyDuringReplay measures the latency of live uploads (last channel uploaded ->
// label event) while the consumer is idle, then while it works through a replay of 10,000 samples
// (HPA_BENCH_REPLAY_SAMPLES to change), with a model that takes 80 ms a batch of 8 (an accelerator): p50 and p99 of
// both, and the ratio of the p99s. Goal: p99 during the replay within 2x of idle.
func BenchmarkLiveLatencyDuringReplay(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("HPA_BENCH_REPLAY_SAMPLES")); err == nil && v > 0 {
		n = v
	}
	var drop atomic.Bool
	drop.Store(true)
	e := newEnvWith(b, nil, func(p bus.Publisher) bus.Publisher { return offPublisher{p, &drop} })
	// The backlog: uploaded while events are lost (as before the service existed).
	bulk := makePlate("bulk", 1, 8, 1)
	one := bulk.files
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				for k, v := range one {
					// Plates of 100 samples, as real plates (a plate CSV is rebuilt per label).
					e.put(fmt.Sprintf("incoming/bulk%03d/r%05d%s", i/100, i, k[len("incoming/bulk/s000"):]), v)
				}
			}
		}()
	}
	wg.Wait()
	drop.Store(false)
	m := newFakeModel("A", 0.2)
	m.delay = 80 * time.Millisecond // a batch of 8 on an accelerator
	cfg := testConfig()
	cfg.MaxBatch = 8
	cfg.FetchWorkers = 4
	cfg.WriteWorkers = 4
	cfg.EventWorkers = 8
	cfg.CSVInterval = DefaultConfig().CSVInterval
	svc, _ := e.startService(cfg, loaderOf(map[string]*fakeModel{"A": m}), "A")

	var mu sync.Mutex
	labeled := map[string]time.Time{}
	sub, err := e.nc.Subscribe("hpa.labels.>", func(msg *nats.Msg) {
		var ev bus.LabelWritten
		if json.Unmarshal(msg.Data, &ev) == nil {
			mu.Lock()
			labeled[ev.Plate+"/"+ev.SampleID] = time.Now()
			mu.Unlock()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// live uploads k samples of plate, one every gap, and returns their latencies.
	live := func(plate string, k int, gap time.Duration) []time.Duration {
		p := makePlate(plate, k, 64, 7)
		sent := map[string]time.Time{}
		for _, id := range p.ids {
			for _, ch := range []string{"red", "green", "blue", "yellow"} {
				key := "incoming/" + plate + "/" + id + "_" + ch + ".png"
				e.put(key, p.files[key])
			}
			sent[plate+"/"+id] = time.Now()
			time.Sleep(gap)
		}
		var lat []time.Duration
		waitFor(b, 5*time.Minute, "live labels", func() bool {
			mu.Lock()
			defer mu.Unlock()
			for k := range sent {
				if _, ok := labeled[k]; !ok {
					return false
				}
			}
			return true
		})
		mu.Lock()
		for k, t := range sent {
			lat = append(lat, labeled[k].Sub(t))
		}
		mu.Unlock()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return lat
	}
	pct := func(l []time.Duration, p float64) time.Duration { return l[min(len(l)-1, int(p*float64(len(l))))] }
	const liveN, gap = 60, 50 * time.Millisecond
	for b.Loop() {
		idle := live("idle", liveN, gap)
		done := make(chan replay.Summary, 1)
		go func() {
			sum, err := replay.Run(context.Background(), replay.Options{Source: "s3://" + testBucket + "/incoming/", NC: e.nc, Store: e.store,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Progress: replay.ProgressOff})
			if err != nil {
				b.Error(err)
			}
			done <- sum
		}()
		waitFor(b, time.Minute, "replay under way", func() bool {
			return counter(b, svc, "hpa_inference_samples_labeled_total", nil) >= liveN+50
		})
		busy := live("busy", liveN, gap)
		replayed := counter(b, svc, "hpa_inference_samples_labeled_total", nil) - 2*liveN
		sum := <-done
		waitFor(b, 30*time.Minute, "replay labeled", func() bool {
			return counter(b, svc, "hpa_inference_samples_labeled_total", nil) >= float64(2*liveN+n)
		})
		ratio := float64(pct(busy, 0.99)) / float64(pct(idle, 0.99))
		b.ReportMetric(float64(pct(idle, 0.99).Milliseconds()), "idle_p99_ms")
		b.ReportMetric(float64(pct(busy, 0.99).Milliseconds()), "replay_p99_ms")
		b.ReportMetric(ratio, "p99_ratio")
		b.Logf("live latency idle p50 %v p99 %v; during a %d-sample replay (published %d; %.0f replayed samples labeled while the live ones were measured) p50 %v p99 %v; p99 ratio %.2f (goal <= 2)",
			pct(idle, 0.5), pct(idle, 0.99), n, sum.Published, replayed, pct(busy, 0.5), pct(busy, 0.99), ratio)
	}
}
