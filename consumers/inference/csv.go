package inference

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/nats-io/nats.go/jetstream"
)

// csvBuilder keeps <LabelsPrefix><plate>/submission.csv (Kaggle "Id,Predicted") equal to the
// plate's labels under concurrent replicas:
//
//   - every label write increments the plate's generation in the plates KV bucket (CAS), after
//     the label is in S3;
//   - a builder takes the plate's lock (KV Create in a bucket with a TTL, so a crashed holder
//     does not block forever), reads the generation g, lists and reads the labels, writes the
//     CSV, records built = g, releases the lock;
//   - a replica drops a plate from its to-do set only once it saw built >= generation, and retries
//     plates whose lock was busy. Every label counted in g was in S3 before g was read, so the
//     listing after it includes the label: the last build covers every label.
type csvBuilder struct {
	s     *Service
	mu    sync.Mutex
	dirty map[string]bool
	kick  chan struct{}
	// rows caches the parsed prediction of each label object by key and ETag, so a rebuild
	// lists the plate and reads only the labels that are new or changed.
	rowsMu sync.Mutex
	rows   map[string]cachedRow
}

type cachedRow struct {
	etag string
	row  labels.SubmissionRow
	ok   bool // false: the object is not a readable label (skipped)
}

type plateGen struct {
	Plate string `json:"plate"`
	Gen   uint64 `json:"gen"`
	Built uint64 `json:"built"`
}

func newCSVBuilder(s *Service) *csvBuilder {
	return &csvBuilder{s: s, dirty: map[string]bool{}, kick: make(chan struct{}, 1), rows: map[string]cachedRow{}}
}

// labelWritten bumps the plate generation and schedules a build.
func (b *csvBuilder) labelWritten(ctx context.Context, plate string) error {
	if err := b.update(ctx, plate, func(p *plateGen) { p.Gen++ }); err != nil {
		return err
	}
	b.mu.Lock()
	b.dirty[plate] = true
	b.mu.Unlock()
	return nil
}

// update applies f to the plate's record with compare-and-set.
func (b *csvBuilder) update(ctx context.Context, plate string, f func(*plateGen)) error {
	key := plateKey(plate)
	for range 200 {
		p := plateGen{Plate: plate}
		var rev uint64
		e, err := b.s.plates.Get(ctx, key)
		switch {
		case err == nil:
			rev = e.Revision()
			if json.Unmarshal(e.Value(), &p) != nil {
				p = plateGen{Plate: plate}
			}
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			return err
		}
		f(&p)
		v, _ := json.Marshal(&p)
		if rev == 0 {
			_, err = b.s.plates.Create(ctx, key, v)
		} else {
			_, err = b.s.plates.Update(ctx, key, v, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err
		}
	}
	return fmt.Errorf("plate %s: too many concurrent generation updates", plate)
}

func (b *csvBuilder) get(ctx context.Context, plate string) (plateGen, error) {
	p := plateGen{Plate: plate}
	e, err := b.s.plates.Get(ctx, plateKey(plate))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	return p, json.Unmarshal(e.Value(), &p)
}

// run builds dirty plates every CSVInterval until ctx is done, then once more (bounded, so a
// stop is never held up by an unreachable bus or store).
func (b *csvBuilder) run(ctx context.Context) {
	t := time.NewTicker(b.s.cfg.CSVInterval)
	defer t.Stop()
	base := context.WithoutCancel(ctx)
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(base, 10*time.Second)
			b.flush(fctx)
			cancel()
			return
		case <-t.C:
		case <-b.kick:
		}
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		b.flush(fctx)
		cancel()
	}
}

// flush tries to build every dirty plate; plates still behind stay dirty.
func (b *csvBuilder) flush(ctx context.Context) {
	b.mu.Lock()
	plates := make([]string, 0, len(b.dirty))
	for p := range b.dirty {
		plates = append(plates, p)
	}
	b.mu.Unlock()
	for _, plate := range plates {
		if ctx.Err() != nil {
			return
		}
		done, err := b.build(ctx, plate)
		if err != nil {
			b.s.m.errors.WithLabelValues("csv").Inc()
			b.s.log.Warn("plate CSV build failed; will retry", "plate", plate, "err", err)
			continue
		}
		if done {
			b.mu.Lock()
			delete(b.dirty, plate)
			b.mu.Unlock()
		}
	}
}

// build brings the plate's CSV up to date when it can take the lock. done means built >= gen
// was observed (nothing left to do for this replica).
func (b *csvBuilder) build(ctx context.Context, plate string) (done bool, err error) {
	// A few rounds at most: labels keep arriving under load; the plate stays dirty and the next
	// flush continues.
	for range 3 {
		p, err := b.get(ctx, plate)
		if err != nil {
			return false, err
		}
		if p.Built >= p.Gen {
			return true, nil
		}
		lockKey := plateKey(plate)
		rev, err := b.s.locks.Create(ctx, lockKey, []byte(fmt.Sprintf("%p", b)))
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil // someone else is building; check again next round
		}
		if err != nil {
			return false, err
		}
		err = b.buildLocked(ctx, plate)
		if derr := b.s.locks.Delete(ctx, lockKey, jetstream.LastRevision(rev)); derr != nil {
			b.s.log.Warn("plate CSV lock not released (expires after the lock TTL)", "plate", plate, "err", derr)
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

func (b *csvBuilder) buildLocked(ctx context.Context, plate string) error {
	p, err := b.get(ctx, plate)
	if err != nil {
		return err
	}
	g := p.Gen
	prefix := b.s.cfg.LabelsPrefix + plate + "/"
	objs, err := b.s.store.List(ctx, prefix)
	if err != nil {
		return err
	}
	var rows []labels.SubmissionRow
	for _, o := range objs {
		k := o.Key
		rest := k[len(prefix):]
		if strings.Contains(rest, "/") || !strings.HasSuffix(rest, ".json") || strings.HasSuffix(rest, ".error.json") {
			continue
		}
		b.rowsMu.Lock()
		c, hit := b.rows[k]
		b.rowsMu.Unlock()
		if !hit || o.ETag == "" || c.etag != o.ETag {
			data, err := b.s.store.Get(ctx, k, 8<<20)
			if err != nil {
				if errors.Is(err, objstore.ErrNotFound) {
					continue
				}
				return err
			}
			c = cachedRow{etag: o.ETag}
			if l, err := labels.ParseLabel(data); err != nil {
				b.s.log.Warn("skipping unreadable label in plate CSV", "key", k, "err", err)
			} else {
				c.row, c.ok = labels.SubmissionRow{ID: l.SampleID, Predicted: l.PredictedIDs()}, true
			}
			if o.ETag != "" {
				b.rowsMu.Lock()
				if len(b.rows) >= 1<<20 {
					b.rows = map[string]cachedRow{}
				}
				b.rows[k] = c
				b.rowsMu.Unlock()
			}
		}
		if c.ok {
			rows = append(rows, c.row)
		}
	}
	if err := b.s.sink.WriteSubmission(ctx, plate, rows); err != nil {
		return err
	}
	b.s.m.csvBuilds.Inc()
	return b.update(ctx, plate, func(p *plateGen) {
		if g > p.Built {
			p.Built = g
		}
	})
}
