package replay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// sample is a sample being grouped from the listing.
type sample struct {
	plate, id string
	ch        [4]*objstore.ObjectInfo
	n         int
	before    string // the listed key before its first channel (a safe resume position)
	lastSeen  int64  // listing index of its latest channel
	// decision, set by a worker.
	publish bool
	why     string // skip reason: "current", "range"
	errs    int
	done    chan struct{}
	pos     string // resume position once this sample is handled
	counts  counts // of the listing when it was emitted
}

// counts are the lister's running counts.
type counts struct {
	listed, ignored, incomplete, refused, outOfRange int64
}

func (s *sample) name() string { return s.plate + "/" + s.id }

func (s *sample) newest() time.Time {
	var t time.Time
	for _, o := range s.ch {
		if o.Modified.After(t) {
			t = o.Modified
		}
	}
	return t
}

// content identifies the four objects (keys, ETags, sizes).
func (s *sample) content() string {
	h := sha256.New()
	for _, o := range s.ch {
		fmt.Fprintf(h, "%s\x00%s\x00%d\n", o.Key, o.ETag, o.Size)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// evictAfter: a sample still missing channels this many listed keys after its last channel is
// incomplete (the channels of a sample are adjacent in the listing unless ids share prefixes).
const evictAfter = 4096

func (r *runner) inventory(ctx context.Context) (Summary, error) {
	o := r.o
	u, err := objstore.ParseURL(o.Source)
	if err != nil {
		return Summary{}, fmt.Errorf("replay: %w", err)
	}
	km, err := bus.NewKeyMapper(o.UploadPrefix, o.KeyPattern)
	if err != nil {
		return Summary{}, fmt.Errorf("replay: %w", err)
	}
	if o.ModelDigest == "" && !o.Force && !o.Reconcile {
		o.Logger.Warn("no current model digest given (--model, --model-digest): samples with any label count as up to date")
	}
	r.prog = startProgress(ctx, o, func(ctx context.Context) (int64, error) {
		var n int64
		for _, err := range o.Store.ObjectsAfter(ctx, u.Prefix, r.cp.Pos) {
			if err != nil {
				return 0, err
			}
			n++
		}
		return n, nil
	})
	defer r.prog.stop()
	subject := bus.EventSubject(strings.TrimSuffix(o.Topology.ReplaySubjects[0], ".>"), u.Bucket)
	if !strings.HasSuffix(o.Topology.ReplaySubjects[0], ".>") {
		subject = o.Topology.ReplaySubjects[0]
	}
	until := o.Until
	if o.MinAge > 0 {
		asOf := o.AsOf
		if asOf.IsZero() {
			asOf = r.start
		}
		if u := asOf.Add(-o.MinAge); until.IsZero() || u.Before(until) {
			until = u
		}
	}
	skipDone := map[string]bool{}
	for _, d := range r.cp.Done {
		skipDone[d] = true
	}
	lx := &labelIndex{store: o.Store, prefix: o.LabelsPrefix, plates: map[string]*plateLabels{}}

	// Listing and grouping (this goroutine) -> label checks (Workers) -> in-order publishing.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *sample, o.Workers*2)
	order := make(chan *sample, o.Workers*8)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				r.decide(lctx, lx, s)
				close(s.done)
			}
		}()
	}
	var listErr error
	var c counts // the lister's
	var refusedSeen int64
	listerDone := make(chan struct{})
	go func() {
		defer close(listerDone)
		defer close(order)
		defer close(work)
		pending := map[string]*sample{}
		prevKey := r.cp.Pos
		var idx int64
		safePos := func() string {
			pos := prevKey
			for _, p := range pending {
				if p.before < pos {
					pos = p.before
				}
			}
			return pos
		}
		emit := func(s *sample) bool {
			s.done = make(chan struct{})
			s.pos, s.counts = safePos(), c
			if o.Force {
				// Nothing to check: decided here, no hand-off to a worker.
				s.publish = true
				close(s.done)
				select {
				case order <- s:
					return true
				case <-lctx.Done():
					return false
				}
			}
			select {
			case order <- s:
			case <-lctx.Done():
				return false
			}
			select {
			case work <- s:
			case <-lctx.Done():
				return false
			}
			return true
		}
		for oi, err := range prefetch(lctx, o.Store.ObjectsAfter(lctx, u.Prefix, r.cp.Pos), 4096) {
			if err != nil {
				listErr = err
				return
			}
			idx++
			c.listed++
			key := oi.Key
			sk, ok, err := km.Map(key)
			switch {
			case err != nil:
				c.refused++
				o.Logger.Warn("refused object key", "key", key, "err", err)
			case !ok:
				c.ignored++
			default:
				name := sk.Plate + "/" + sk.ID
				if skipDone[name] {
					break
				}
				s := pending[name]
				if s == nil {
					s = &sample{plate: sk.Plate, id: sk.ID, before: prevKey}
					pending[name] = s
				}
				if s.ch[sk.Channel] == nil {
					s.n++
				}
				info := oi
				s.ch[sk.Channel] = &info
				s.lastSeen = idx
			}
			prevKey = key
			for name, p := range pending {
				switch {
				case p.n == 4:
					delete(pending, name)
					if !o.Since.IsZero() && p.newest().Before(o.Since) || !until.IsZero() && !p.newest().Before(until) {
						c.outOfRange++
						p.why = "range"
						p.done = make(chan struct{})
						close(p.done)
						p.pos, p.counts = safePos(), c
						select {
						case order <- p:
						case <-lctx.Done():
							return
						}
						continue
					}
					if !emit(p) {
						return
					}
				case idx-p.lastSeen > evictAfter:
					delete(pending, name)
					c.incomplete++
					o.Logger.Warn("incomplete sample not replayed", "plate", p.plate, "sample", p.id, "channels", p.n)
				}
			}
		}
		for _, p := range pending {
			c.incomplete++
			var missing []string
			for c, x := range p.ch {
				if x == nil {
					missing = append(missing, pipeline.ChannelNames[c])
				}
			}
			o.Logger.Warn("incomplete sample not replayed", "plate", p.plate, "sample", p.id, "missing", missing)
		}
		pending = nil
		// The final position: the last listed key.
		end := &sample{why: "end", done: make(chan struct{}), pos: prevKey, counts: c}
		close(end.done)
		select {
		case order <- end:
		case <-lctx.Done():
		}
	}()

	var runErr error
	var done []string
	lastPos := r.cp.Pos
	base := r.sum
	for s := range order {
		<-s.done
		if runErr != nil {
			continue // drain
		}
		if s.why != "range" && s.why != "end" {
			if s.publish {
				if err := r.publish(ctx, r.sampleMsg(subject, u.Bucket, s), 4); err != nil {
					runErr = err
					cancel()
					continue
				}
				if o.OnPublish != nil && !o.DryRun {
					o.OnPublish(s.plate, s.id)
				}
			} else {
				r.sum.UpToDate++
			}
			r.sum.Samples++
			r.sum.Errors += int64(s.errs)
		}
		// Handled: the position and the counts of the listing up to it are the checkpoint's.
		if s.pos != lastPos {
			done, lastPos = nil, s.pos
		}
		if s.why == "" {
			done = append(done, s.name())
		}
		r.sum.Listed = base.Listed + s.counts.listed
		r.sum.Ignored = base.Ignored + s.counts.ignored
		r.sum.Incomplete = base.Incomplete + s.counts.incomplete
		r.sum.OutOfRange = base.OutOfRange + s.counts.outOfRange
		r.sum.Errors += s.counts.refused - refusedSeen
		refusedSeen = s.counts.refused
		if s.why == "end" {
			break
		}
		r.prog.tick(r.sum, r.sum.Listed)
		if err := r.maybeCheckpoint(ctx, lastPos, done); err != nil {
			runErr = err
			cancel()
		}
	}
	cancel()
	for range order {
	}
	<-listerDone
	wg.Wait()
	if errors.Is(runErr, errCrashed) {
		return r.sum, runErr
	}
	finished := runErr == nil && listErr == nil && ctx.Err() == nil
	if cerr := r.checkpoint(context.WithoutCancel(ctx), lastPos, done, finished); cerr != nil && runErr == nil {
		runErr = cerr
	}
	r.prog.finish(r.sum)
	switch {
	case runErr != nil:
		return r.sum, runErr
	case listErr != nil:
		return r.sum, fmt.Errorf("replay: list %s: %w", o.Source, listErr)
	case ctx.Err() != nil:
		return r.sum, ctx.Err()
	}
	return r.sum, nil
}

// sampleMsg is one S3 notification with the four channel records of s, marked as a replay.
func (r *runner) sampleMsg(subject, bucket string, s *sample) *nats.Msg {
	evs := make([]bus.ObjectEvent, 0, 4)
	for _, c := range s.ch {
		evs = append(evs, bus.ObjectEvent{Bucket: bucket, Key: c.Key, Size: c.Size, ETag: c.ETag,
			EventName: bus.ObjectCreatedPut, EventTime: c.Modified, Region: r.o.Region})
	}
	data, _ := bus.EncodeS3Events(bus.S3EventOptions{Region: r.o.Region, EventSource: "aws:s3", ConfigurationID: "hpa-replay"}, evs...)
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set("Nats-Msg-Id", r.msgID(bucket+"/"+s.name()+"#"+s.content()))
	if r.o.Force {
		m.Header.Set(bus.HeaderReplayForce, r.cp.Run)
	}
	return m
}

// decide sets s.publish: Force publishes; reconcile publishes samples without label and error
// record; otherwise (only stale) samples without a label, with a label older than a channel or
// of another model digest.
func (r *runner) decide(ctx context.Context, lx *labelIndex, s *sample) {
	o := r.o
	if o.Force {
		s.publish = true
		return
	}
	pl, err := lx.plate(ctx, s.plate)
	if err != nil {
		s.errs++
		s.publish = true
		o.Logger.Warn("labels of plate not listed; publishing", "plate", s.plate, "err", err)
		return
	}
	li := pl.ids[s.id]
	if o.Reconcile {
		s.publish = !li.label && !li.error
		return
	}
	switch {
	case !li.label:
		s.publish = true
	case li.modified.Before(s.newest()):
		s.publish = true // a channel was uploaded again after the label was written
	case o.ModelDigest == "":
		s.publish = false
	default:
		b, err := o.Store.Get(ctx, li.key, 1<<20)
		if err != nil {
			if !errors.Is(err, objstore.ErrNotFound) {
				s.errs++
				o.Logger.Warn("label unreadable; publishing", "key", li.key, "err", err)
			}
			s.publish = true
			return
		}
		l, err := labels.ParseLabel(b)
		if err != nil {
			s.errs++
			o.Logger.Warn("label unparsable; publishing", "key", li.key, "err", err)
			s.publish = true
			return
		}
		s.publish = l.Model.ManifestDigest != o.ModelDigest
	}
}

// labelIndex lists the labels prefix of a plate once (the few plates being worked on are kept).
type labelIndex struct {
	store  Store
	prefix string
	mu     sync.Mutex
	plates map[string]*plateLabels
	order  []string
}

type plateLabels struct {
	once sync.Once
	ids  map[string]labelState
	err  error
}

type labelState struct {
	label, error bool
	key          string
	modified     time.Time
}

const keepPlates = 8

func (x *labelIndex) plate(ctx context.Context, plate string) (*plateLabels, error) {
	x.mu.Lock()
	p := x.plates[plate]
	if p == nil {
		p = &plateLabels{}
		x.plates[plate] = p
		x.order = append(x.order, plate)
		if len(x.order) > keepPlates {
			delete(x.plates, x.order[0])
			x.order = x.order[1:]
		}
	}
	x.mu.Unlock()
	p.once.Do(func() {
		p.ids = map[string]labelState{}
		dir := x.prefix + plate + "/"
		for oi, err := range x.store.ObjectsAfter(ctx, dir, "") {
			if err != nil {
				p.err = err
				return
			}
			name := strings.TrimPrefix(oi.Key, dir)
			if strings.Contains(name, "/") {
				continue // a nested plate
			}
			if id, ok := strings.CutSuffix(name, ".error.json"); ok {
				st := p.ids[id]
				st.error = true
				p.ids[id] = st
			} else if id, ok := strings.CutSuffix(name, ".json"); ok {
				st := p.ids[id]
				st.label, st.key, st.modified = true, oi.Key, oi.Modified
				p.ids[id] = st
			}
		}
	})
	return p, p.err
}

// prefetch runs seq in a goroutine ahead of its consumer, so the next listing page is fetched
// while the current one is grouped and published.
func prefetch(ctx context.Context, seq iter.Seq2[objstore.ObjectInfo, error], n int) iter.Seq2[objstore.ObjectInfo, error] {
	return func(yield func(objstore.ObjectInfo, error) bool) {
		type item struct {
			oi  objstore.ObjectInfo
			err error
		}
		ch := make(chan item, n)
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			defer close(ch)
			for oi, err := range seq {
				select {
				case ch <- item{oi, err}:
				case <-pctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
		for it := range ch {
			if !yield(it.oi, it.err) {
				return
			}
		}
	}
}

// currentModelDigest reads the manifest digest of the current-model fact (KV bus.ModelsBucket, key
// bus.CurrentModelKey) that the training coordinator and `hpa model promote` keep; "" when there
// is none. A fact without a digest is resolved through its location when that is in this bucket.
func currentModelDigest(ctx context.Context, o *Options) string {
	js, err := jetstream.New(o.NC)
	if err != nil {
		return ""
	}
	kv, err := js.KeyValue(ctx, bus.ModelsBucket)
	if err != nil {
		return ""
	}
	e, err := kv.Get(ctx, bus.CurrentModelKey)
	if err != nil {
		return ""
	}
	p := bus.ParsePromotion(e.Value())
	d := p.ManifestDigest
	if d == "" && p.Location != "" {
		src, _ := objstore.ParseURL(o.Source)
		d, err = ModelDigest(ctx, p.Location, func(ctx context.Context, bucket, key string) ([]byte, error) {
			if bucket != src.Bucket {
				return nil, fmt.Errorf("bucket %s is not the replayed bucket %s (give --model)", bucket, src.Bucket)
			}
			return o.Store.Get(ctx, key, 64<<20)
		})
		if err != nil {
			o.Logger.Warn("current model fact unreadable", "location", p.Location, "err", err)
			return ""
		}
	}
	if d != "" {
		o.Logger.Info("current model from the current-model fact", "location", p.Location, "version", p.Version, "digest", d)
	}
	return d
}
