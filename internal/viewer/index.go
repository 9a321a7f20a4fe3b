package viewer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
)

// Sample states.
const (
	StatusLabeled    = "labeled"    // a label JSON exists (newer than any error record)
	StatusFailed     = "failed"     // an error record exists (newer than any label)
	StatusIncomplete = "incomplete" // fewer than four channels uploaded, no result yet
	StatusPending    = "pending"    // four channels uploaded, no result yet (being labeled)
)

// sampleObjects is what listings say about one sample.
type sampleObjects struct {
	ID       string
	Channels [4]Object // Key empty: not uploaded
	Label    Object
	Error    Object
}

func (s *sampleObjects) status() string {
	switch {
	case s.Label.Key != "" && (s.Error.Key == "" || !s.Error.Modified.After(s.Label.Modified)):
		return StatusLabeled
	case s.Error.Key != "":
		return StatusFailed
	case s.complete():
		return StatusPending
	}
	return StatusIncomplete
}

func (s *sampleObjects) complete() bool {
	for _, c := range s.Channels {
		if c.Key == "" {
			return false
		}
	}
	return true
}

// version names the channel contents: it changes when any channel object does, so thumbnail
// keys and URLs built from it never serve stale pixels.
func (s *sampleObjects) version() string {
	h := sha256.New()
	for _, c := range s.Channels {
		h.Write([]byte(c.Key + "\x00" + c.ETag + "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func (s *sampleObjects) updated() time.Time {
	t := s.Label.Modified
	for _, o := range append(s.Channels[:], s.Error) {
		if o.Modified.After(t) {
			t = o.Modified
		}
	}
	return t
}

// plateObjects is one plate's listing.
type plateObjects struct {
	Name    string
	Samples map[string]*sampleObjects
	CSV     Object
}

func (p *plateObjects) sample(id string) *sampleObjects {
	s := p.Samples[id]
	if s == nil {
		s = &sampleObjects{ID: id}
		p.Samples[id] = s
	}
	return s
}

// sortedIDs returns the sample ids in natural order (numbers inside ids compare by value).
func (p *plateObjects) sortedIDs() []string {
	ids := make([]string, 0, len(p.Samples))
	for id := range p.Samples {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return naturalLess(ids[i], ids[j]) })
	return ids
}

// naturalLess orders "s2" before "s10".
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitsPrefix(a), digitsPrefix(b)
		if da != "" && db != "" {
			ta, tb := strings.TrimLeft(da, "0"), strings.TrimLeft(db, "0")
			if len(ta) != len(tb) {
				return len(ta) < len(tb)
			}
			if ta != tb {
				return ta < tb
			}
			a, b = a[len(da):], b[len(db):]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitsPrefix(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// listing is a cached result of listing some prefixes.
type listing struct {
	plates map[string]*plateObjects
	at     time.Time
	err    error
	done   chan struct{}
}

// allPlates is the cache slot of the whole listing (plate names never contain NUL).
const allPlates = "\x00all"

// index caches listings of the upload and labels prefixes: per plate for plate pages, whole for
// the plate list. Entries live IndexTTL and are dropped early by label events.
type index struct {
	v *Viewer

	mu    sync.Mutex
	cache map[string]*listing // plate name or allPlates
}

func newIndex(v *Viewer) *index { return &index{v: v, cache: map[string]*listing{}} }

// invalidate drops what an event for plate makes stale.
func (x *index) invalidate(plate string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.cache, allPlates)
	delete(x.cache, plate)
}

// get returns a fresh-enough listing of slot, listing at most once at a time (callers that
// arrive during a listing wait for it).
func (x *index) get(ctx context.Context, slot string) (map[string]*plateObjects, error) {
	x.mu.Lock()
	l := x.cache[slot]
	if l != nil {
		select {
		case <-l.done:
			if l.err != nil || x.v.now().Sub(l.at) >= x.v.cfg.IndexTTL {
				l = nil
			}
		default:
		}
	}
	if l == nil {
		if len(x.cache) > 4096 { // bounded: forget everything rather than grow without limit
			clear(x.cache)
		}
		l = &listing{done: make(chan struct{})}
		x.cache[slot] = l
		go func() {
			// The listing outlives the request that started it (others may wait for it too),
			// bounded by the request timeout.
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), x.v.cfg.RequestTimeout)
			defer cancel()
			if slot == allPlates {
				l.plates, l.err = x.list(lctx, "")
			} else {
				l.plates, l.err = x.list(lctx, slot+"/")
			}
			l.at = x.v.now()
			close(l.done)
		}()
	}
	x.mu.Unlock()
	select {
	case <-l.done:
		return l.plates, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// plate returns the listing of one plate (nil when the plate has no objects).
func (x *index) plate(ctx context.Context, name string) (*plateObjects, error) {
	m, err := x.get(ctx, name)
	if err != nil {
		return nil, err
	}
	return m[name], nil
}

// plates returns the listing of every plate.
func (x *index) plates(ctx context.Context) (map[string]*plateObjects, error) {
	return x.get(ctx, allPlates)
}

// list lists the upload and labels prefixes (plus sub, "" or "<plate>/") and groups the objects
// by plate and sample.
func (x *index) list(ctx context.Context, sub string) (map[string]*plateObjects, error) {
	cfg := x.v.cfg
	var ups, labs []Object
	var upErr, labErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ups, upErr = x.v.store.List(ctx, cfg.UploadPrefix+sub) }()
	go func() { defer wg.Done(); labs, labErr = x.v.store.List(ctx, cfg.LabelsPrefix+sub) }()
	wg.Wait()
	if err := errors.Join(upErr, labErr); err != nil {
		return nil, err
	}
	plates := map[string]*plateObjects{}
	get := func(name string) *plateObjects {
		p := plates[name]
		if p == nil {
			p = &plateObjects{Name: name, Samples: map[string]*sampleObjects{}}
			plates[name] = p
		}
		return p
	}
	for _, o := range ups {
		plate, id, ch, ok := splitUploadKey(strings.TrimPrefix(o.Key, cfg.UploadPrefix))
		if !ok || checkName(plate, true) != nil || checkName(id, false) != nil {
			continue
		}
		s := get(plate).sample(id)
		// Two files for one channel (x_red.png and x_red.tif): the newer one is what counts.
		if s.Channels[ch].Key == "" || o.Modified.After(s.Channels[ch].Modified) {
			s.Channels[ch] = o
		}
	}
	for _, o := range labs {
		plate, id, kind := splitLabelKey(strings.TrimPrefix(o.Key, cfg.LabelsPrefix))
		if kind == notLabelKey || checkName(plate, true) != nil || (id != "" && checkName(id, false) != nil) {
			continue
		}
		p := get(plate)
		switch kind {
		case labelJSON:
			p.sample(id).Label = o
		case errorJSON:
			p.sample(id).Error = o
		case submissionCSV:
			p.CSV = o
		}
	}
	return plates, nil
}

// labelSummary is what the pages show of a label or error record, cached by key and ETag.
type labelSummary struct {
	// label
	Predicted    []int
	Probs        [labels.NumClasses]float64
	ModelName    string
	ModelVersion string
	// error record
	ErrorKind   string
	ErrorReason string
	// Bad is set when the object could not be read or parsed.
	Bad string
	// transient: Bad comes from a failed read (not cached).
	transient bool
}

// confidence is the highest probability among the predicted classes (the top probability when
// none is predicted).
func (l *labelSummary) confidence() float64 {
	best := -1.0
	for _, k := range l.Predicted {
		best = max(best, l.Probs[k])
	}
	if best < 0 {
		for _, p := range l.Probs {
			best = max(best, p)
		}
	}
	return best
}

type summaryEntry struct {
	etag string
	sum  *labelSummary
}

// summaries caches parsed label and error records (bounded; cleared when full).
type summaries struct {
	v     *Viewer
	mu    sync.Mutex
	m     map[string]summaryEntry
	reads atomic.Int64 // records read from the store
}

const maxSummaries = 200_000

// maxRecordBytes bounds one label or error JSON read.
const maxRecordBytes = 1 << 20

// get returns the summaries of objs (label or error records), reading the ones not cached with
// at most cfg.ReadWorkers requests at once.
func (c *summaries) get(ctx context.Context, objs []Object) []*labelSummary {
	out := make([]*labelSummary, len(objs))
	var todo []int
	c.mu.Lock()
	for i, o := range objs {
		if e, ok := c.m[o.Key]; ok && e.etag == o.ETag {
			out[i] = e.sum
		} else {
			todo = append(todo, i)
		}
	}
	c.mu.Unlock()
	if len(todo) == 0 {
		return out
	}
	sem := make(chan struct{}, c.v.cfg.ReadWorkers)
	var wg sync.WaitGroup
	for _, i := range todo {
		if err := ctx.Err(); err != nil {
			// Out of time: the rest are shown as unreadable (and read on a later request).
			out[i] = &labelSummary{Bad: err.Error(), transient: true}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			out[i] = c.read(ctx, objs[i])
		}(i)
	}
	wg.Wait()
	c.mu.Lock()
	if len(c.m)+len(todo) > maxSummaries {
		clear(c.m)
	}
	for _, i := range todo {
		if !out[i].transient {
			c.m[objs[i].Key] = summaryEntry{etag: objs[i].ETag, sum: out[i]}
		}
	}
	c.mu.Unlock()
	return out
}

func (c *summaries) read(ctx context.Context, o Object) *labelSummary {
	c.reads.Add(1)
	b, err := c.v.store.Get(ctx, o.Key, maxRecordBytes)
	if err != nil {
		return &labelSummary{Bad: err.Error(), transient: !errors.Is(err, ErrTooLarge)}
	}
	return summarize(o.Key, b)
}

func summarize(key string, b []byte) *labelSummary {
	if strings.HasSuffix(key, ".error.json") {
		r, err := labels.ParseErrorRecord(b)
		if err != nil {
			return &labelSummary{Bad: err.Error()}
		}
		return &labelSummary{ErrorKind: r.Kind, ErrorReason: r.Reason}
	}
	l, err := labels.ParseLabel(b)
	if err != nil {
		return &labelSummary{Bad: err.Error()}
	}
	s := &labelSummary{Predicted: l.PredictedIDs(), ModelName: l.Model.Name, ModelVersion: l.Model.Version}
	for k, p := range l.Probabilities {
		s.Probs[k] = float64(p.P)
	}
	return s
}

// sortedVersions returns the distinct model versions of the summaries.
func sortedVersions(sums []*labelSummary) []string {
	var vs []string
	for _, s := range sums {
		if s != nil && s.ModelVersion != "" && !slices.Contains(vs, s.ModelVersion) {
			vs = append(vs, s.ModelVersion)
		}
	}
	slices.Sort(vs)
	return vs
}

// The label summaries of a plate are also kept in the thumbnail cache, as one object per plate,
// so that a restarted viewer reads one object instead of every label of the plate:
//
//	<thumbs prefix><plate>/_labels.json   {"schema": "hpa.viewer.labels/v1",
//	                                       "entries": {"<label key>": {"etag": ..., summary fields}}}
//
// Entries count only while their ETag is the record's. A page that had to read many records
// (indexWriteAfter) rewrites the object.
const (
	labelIndexSchema = "hpa.viewer.labels/v1"
	labelIndexName   = "_labels.json"
	indexWriteAfter  = 32
)

type indexEntry struct {
	ETag         string    `json:"etag"`
	Predicted    []int     `json:"predicted,omitempty"`
	Probs        []float64 `json:"probs,omitempty"`
	ModelName    string    `json:"model_name,omitempty"`
	ModelVersion string    `json:"model_version,omitempty"`
	ErrorKind    string    `json:"error_kind,omitempty"`
	ErrorReason  string    `json:"error_reason,omitempty"`
	Bad          string    `json:"bad,omitempty"`
}

type labelIndex struct {
	Schema  string                `json:"schema"`
	Entries map[string]indexEntry `json:"entries"`
}

func (v *Viewer) labelIndexKey(plate string) string {
	return v.cfg.ThumbsPrefix + plate + "/" + labelIndexName
}

// plateSummaries returns the summaries of a plate's records (objs), seeding the in-memory cache
// from the plate's stored index when many are missing, and storing the index again after a page
// that had to read many records.
func (v *Viewer) plateSummaries(ctx context.Context, plate string, objs []Object) []*labelSummary {
	if v.sums.missing(objs) >= indexWriteAfter {
		v.loadLabelIndex(ctx, plate)
	}
	before := v.sums.reads.Load()
	sums := v.sums.get(ctx, objs)
	if v.sums.reads.Load()-before >= indexWriteAfter && ctx.Err() == nil {
		v.storeLabelIndex(ctx, plate, objs, sums)
	}
	return sums
}

func (c *summaries) missing(objs []Object) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, o := range objs {
		if e, ok := c.m[o.Key]; !ok || e.etag != o.ETag {
			n++
		}
	}
	return n
}

func (v *Viewer) loadLabelIndex(ctx context.Context, plate string) {
	key := v.labelIndexKey(plate)
	if keyUnder(key, v.cfg.ThumbsPrefix) != nil {
		return
	}
	b, err := v.store.Get(ctx, key, 64<<20)
	if err != nil {
		return
	}
	var idx labelIndex
	if json.Unmarshal(b, &idx) != nil || idx.Schema != labelIndexSchema {
		return
	}
	prefix := v.cfg.LabelsPrefix + plate + "/"
	v.sums.mu.Lock()
	defer v.sums.mu.Unlock()
	for k, e := range idx.Entries {
		if !strings.HasPrefix(k, prefix) || e.ETag == "" || (len(e.Probs) != 0 && len(e.Probs) != labels.NumClasses) {
			continue
		}
		if cur, ok := v.sums.m[k]; ok && cur.etag == e.ETag {
			continue
		}
		s := &labelSummary{Predicted: e.Predicted, ModelName: e.ModelName, ModelVersion: e.ModelVersion,
			ErrorKind: e.ErrorKind, ErrorReason: e.ErrorReason, Bad: e.Bad}
		copy(s.Probs[:], e.Probs)
		if slices.ContainsFunc(s.Predicted, func(k int) bool { return k < 0 || k >= labels.NumClasses }) {
			continue
		}
		v.sums.m[k] = summaryEntry{etag: e.ETag, sum: s}
	}
}

func (v *Viewer) storeLabelIndex(ctx context.Context, plate string, objs []Object, sums []*labelSummary) {
	idx := labelIndex{Schema: labelIndexSchema, Entries: make(map[string]indexEntry, len(objs))}
	for i, o := range objs {
		s := sums[i]
		if s == nil || s.transient {
			continue
		}
		e := indexEntry{ETag: o.ETag, Predicted: s.Predicted, ModelName: s.ModelName, ModelVersion: s.ModelVersion,
			ErrorKind: s.ErrorKind, ErrorReason: s.ErrorReason, Bad: s.Bad}
		if s.ErrorKind == "" && s.Bad == "" {
			e.Probs = s.Probs[:]
		}
		idx.Entries[o.Key] = e
	}
	b, err := json.Marshal(idx)
	key := v.labelIndexKey(plate)
	if err != nil || keyUnder(key, v.cfg.ThumbsPrefix) != nil {
		return
	}
	if err := v.store.Put(ctx, key, b, "application/json"); err != nil {
		v.log.Warn("viewer: could not store the label index", "key", key, "err", err)
	}
}
