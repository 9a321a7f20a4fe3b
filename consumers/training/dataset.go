package training

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/objstore"
)

// DatasetSchema is the schema of a frozen dataset snapshot (datasets/<digest>.json).
const DatasetSchema = "hpa.dataset/v1"

// Keys of the dataset registry (KV bucket bus.DatasetsBucket).
const (
	registryKey = "registry"
	filePrefix  = "files."
)

// FileEntry is one label file the coordinator has seen (KV key files.<hash of the object key>).
// Seq is the events-stream sequence of its upload: the order files are applied in.
type FileEntry struct {
	Key   string    `json:"key"`
	ETag  string    `json:"etag"`
	Seq   uint64    `json:"seq"`
	Rows  int       `json:"rows"`
	Valid bool      `json:"valid"`
	Error string    `json:"error,omitempty"`
	Time  time.Time `json:"time"`
}

// Registry is the dataset registry's summary (KV key "registry"): the current label set's digest
// and size, how many of its samples are new since the production model's dataset, and when the
// last label file arrived (the debounce clock).
type Registry struct {
	Digest            string    `json:"digest"`
	Samples           int       `json:"samples"`
	NewSamples        int       `json:"new_samples"`
	ProductionDataset string    `json:"production_dataset,omitempty"`
	ProductionSamples int       `json:"production_samples,omitempty"`
	Files             int       `json:"files"`
	Rejected          int       `json:"rejected"`
	LastFile          time.Time `json:"last_file"`
	LastSeq           uint64    `json:"last_seq"`
	Updated           time.Time `json:"updated"`
}

// Sample is one labeled sample of a snapshot: Id, targets, and its four channel objects (red,
// green, blue, yellow) with the ETags they had when the snapshot was frozen.
type Sample struct {
	ID      string    `json:"id"`
	Targets []int     `json:"targets"`
	Keys    [4]string `json:"keys"`
	ETags   [4]string `json:"etags"`
}

// Snapshot is an immutable dataset: datasets/<digest>.json.
type Snapshot struct {
	Schema  string    `json:"schema"`
	Digest  string    `json:"digest"`
	Created time.Time `json:"created"`
	Files   []string  `json:"files"` // the label files it was built from, in applied order
	Samples []Sample  `json:"samples"`
}

// Digest is "sha256:<hex>" over the samples' Ids, targets, keys and ETags (in Id order).
func digestSamples(ss []Sample) string {
	h := sha256.New()
	for _, s := range ss {
		t := slices.Clone(s.Targets)
		slices.Sort(t)
		fmt.Fprintf(h, "%s\t%v", s.ID, t)
		for c := range s.Keys {
			fmt.Fprintf(h, "\t%s=%s", s.Keys[c], s.ETags[c])
		}
		h.Write([]byte{'\n'})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// SnapshotKey is the key of the snapshot of digest below prefix.
func SnapshotKey(prefix, digest string) string {
	return prefix + strings.TrimPrefix(digest, "sha256:") + ".json"
}

// TrainCSV renders the snapshot as a Kaggle train.csv.
func (s *Snapshot) TrainCSV() []byte {
	var b strings.Builder
	b.WriteString("Id,Target\n")
	for _, x := range s.Samples {
		b.WriteString(x.ID)
		b.WriteByte(',')
		for i, c := range x.Targets {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.Itoa(c))
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// fileKVKey is the registry key of label file key.
func fileKVKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return filePrefix + hex.EncodeToString(h[:12])
}

// registry is the dataset registry over its KV bucket and the object store.
type registry struct {
	kv           jetstream.KeyValue
	store        objstore.Store
	labelsPrefix string
	imagesPrefix string
}

// files returns every file entry, in upload order.
func (r *registry) files(ctx context.Context) ([]FileEntry, error) {
	lister, err := r.kv.ListKeysFiltered(ctx, filePrefix+">")
	if err != nil {
		return nil, err
	}
	var out []FileEntry
	for k := range lister.Keys() {
		e, err := r.kv.Get(ctx, k)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return nil, err
		}
		var fe FileEntry
		if err := json.Unmarshal(e.Value(), &fe); err != nil {
			return nil, fmt.Errorf("registry %s: %w", k, err)
		}
		out = append(out, fe)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

// putFile records a label file; an entry from a later upload is never replaced by an earlier one.
func (r *registry) putFile(ctx context.Context, fe FileEntry) error {
	b, _ := json.Marshal(fe)
	k := fileKVKey(fe.Key)
	for range 10 {
		cur, err := r.kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err := r.kv.Create(ctx, k, b); err == nil {
				return nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return err
			}
		case err != nil:
			return err
		default:
			var old FileEntry
			if json.Unmarshal(cur.Value(), &old) == nil && old.Seq > fe.Seq {
				return nil
			}
			if _, err := r.kv.Update(ctx, k, b, cur.Revision()); err == nil {
				return nil
			}
		}
	}
	return fmt.Errorf("registry: %s: too many concurrent updates", fe.Key)
}

// images indexes the channel objects under the image prefix.
func (r *registry) images(ctx context.Context) (*channelIndex, error) {
	objs, err := r.store.List(ctx, r.imagesPrefix)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(objs))
	for _, o := range objs {
		m[o.Key] = o.ETag
	}
	return newChannelIndex(m), nil
}

// build assembles the current label set from the valid label files: files apply in upload order
// and a later row for an Id replaces an earlier one; samples whose images are gone are left out.
func (r *registry) build(ctx context.Context) (*Snapshot, []FileEntry, error) {
	files, err := r.files(ctx)
	if err != nil {
		return nil, nil, err
	}
	ix, err := r.images(ctx)
	if err != nil {
		return nil, nil, err
	}
	byID := map[string]Sample{}
	snap := &Snapshot{Schema: DatasetSchema}
	for _, fe := range files {
		if !fe.Valid {
			continue
		}
		data, err := r.store.Get(ctx, fe.Key, 256<<20)
		if errors.Is(err, objstore.ErrNotFound) {
			continue // deleted since: its rows leave the set
		}
		if err != nil {
			return nil, nil, err
		}
		rows, err := ParseLabelFile(fe.Key, fe.ETag, data, nil)
		if err != nil {
			continue // replaced by a bad version after it was registered; the event of that upload records it
		}
		snap.Files = append(snap.Files, fe.Key)
		for _, row := range rows {
			keys, etags, missing := ix.Channels(row.ID)
			if len(missing) > 0 {
				delete(byID, row.ID)
				continue
			}
			byID[row.ID] = Sample{ID: row.ID, Targets: row.Targets, Keys: keys, ETags: etags}
		}
	}
	for _, s := range byID {
		snap.Samples = append(snap.Samples, s)
	}
	sort.Slice(snap.Samples, func(i, j int) bool { return snap.Samples[i].ID < snap.Samples[j].ID })
	snap.Digest = digestSamples(snap.Samples)
	return snap, files, nil
}

// newSince counts the samples of s that are not in base with the same targets and images.
func newSince(s, base *Snapshot) int {
	if base == nil {
		return len(s.Samples)
	}
	old := make(map[string]string, len(base.Samples))
	for _, x := range base.Samples {
		old[x.ID] = digestSamples([]Sample{x})
	}
	n := 0
	for _, x := range s.Samples {
		if old[x.ID] != digestSamples([]Sample{x}) {
			n++
		}
	}
	return n
}

// readRegistry returns the summary (zero when none yet).
func (r *registry) readRegistry(ctx context.Context) (Registry, error) {
	var reg Registry
	e, err := r.kv.Get(ctx, registryKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return reg, nil
	}
	if err != nil {
		return reg, err
	}
	return reg, json.Unmarshal(e.Value(), &reg)
}

func (r *registry) writeRegistry(ctx context.Context, reg Registry) error {
	b, _ := json.Marshal(reg)
	_, err := r.kv.Put(ctx, registryKey, b)
	return err
}

// readSnapshot reads datasets/<digest>.json.
func readSnapshot(ctx context.Context, store objstore.Store, key string) (*Snapshot, error) {
	b, err := store.Get(ctx, key, 1<<30)
	if err != nil {
		return nil, err
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("dataset %s: %w", key, err)
	}
	if s.Schema != DatasetSchema {
		return nil, fmt.Errorf("dataset %s: schema %q, want %q", key, s.Schema, DatasetSchema)
	}
	return &s, nil
}

// writeSnapshot stores s under its digest (an existing snapshot of the digest is the same data).
func writeSnapshot(ctx context.Context, store objstore.Store, prefix string, s *Snapshot) (string, error) {
	key := SnapshotKey(prefix, s.Digest)
	if _, err := store.Get(ctx, key, 1<<30); err == nil {
		return key, nil
	}
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return "", err
	}
	return key, store.Put(ctx, key, append(b, '\n'), "application/json")
}

// labelMatrix returns the targets of a snapshot in sample order.
func (s *Snapshot) labelMatrix() [][]int {
	out := make([][]int, len(s.Samples))
	for i, x := range s.Samples {
		out[i] = x.Targets
	}
	return out
}

var _ = labels.NumClasses
