package training

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/testenv/minio"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

// Against a real MinIO: its bucket notifications (AWS event format, through JetStream) bring label
// files to the coordinator (a bad one gets its error record, a good one enters the registry), and
// the current-model pointer's conditional writes (If-Match / If-None-Match) let exactly one of two
// racing promotions win.
func TestMinIOLabelsAndPromotionRace(t *testing.T) {
	dir := t.TempDir()
	ns, nc, js := servers.JetStream(t, filepath.Join(dir, "nats"))
	ctx := context.Background()
	if _, err := bus.EnsureEventsStream(ctx, js, bus.EventsStreamConfig{Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	const bucket = "hpa"
	srv := minio.Start(t, ns.ClientURL(), bus.EventSubject("", bucket))
	srv.CreateBucket(t, bucket)
	srv.NotifyNATS(t, bucket, "training/labels/", "s3:ObjectCreated:*")
	e := &testEnv{dir: dir, nc: nc, js: js, store: &objstore.Bucket{Client: srv.Client(), Name: bucket}, log: newEnv(t).log}
	data := synthData(t, 6, 11)
	e.uploadImages(t, data, "training/images/")
	cfg := testConfig(e, t)
	cfg.MinNew = 1000
	startCoordinator(t, e, cfg)
	good, _ := os.ReadFile(filepath.Join(data, "train.csv"))
	e.put(t, "training/labels/bad.csv", []byte("Id,Target\nghost,3\n"))
	e.put(t, "training/labels/good.csv", good)
	var rec LabelFileError
	waitFor(t, 30*time.Second, "error record", func() bool {
		b, err := e.store.Get(ctx, "training/labels/bad.csv.error.json", 0)
		return err == nil && json.Unmarshal(b, &rec) == nil
	})
	if len(rec.Rows) != 1 || !strings.Contains(rec.Rows[0].Reason, "missing images") {
		t.Errorf("record %+v", rec)
	}
	var reg Registry
	waitFor(t, 30*time.Second, "registry", func() bool {
		b := e.kvGet(t, bus.DatasetsBucket, registryKey)
		return b != nil && json.Unmarshal(b, &reg) == nil && reg.Files == 2
	})
	if reg.Samples != 6 || reg.Rejected != 1 {
		t.Errorf("registry %+v", reg)
	}
	// Racing promotions on MinIO's conditional writes.
	e.putSet(t, "base", 0.5, 0.5)
	m1, m2 := e.models(t), e.models(t)
	if _, err := m1.Decide(ctx, Request{Version: "base"}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		cur, rev, _ := m1.Current(ctx)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for j, mm := range []*Models{m1, m2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := fmt.Sprintf("v%d-%d", i, j)
				errs[j] = mm.swap(ctx, bus.Promotion{Location: mm.Location(v), Version: v}, cur.Version, rev)
			}()
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			if err == nil {
				wins++
			} else if !errors.Is(err, ErrConflict) {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		now, _, _ := m1.Current(ctx)
		ptr, _ := e.store.Get(ctx, "models/current.json", 0)
		if wins != 1 || bus.ParsePromotion(ptr).Version != now.Version {
			t.Fatalf("round %d: %d winners, KV %s, pointer %s", i, wins, now.Version, ptr)
		}
	}
}
