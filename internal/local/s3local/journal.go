package s3local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// intent is a write-ahead record of an event that must reach the bus: it is made durable before
// the object it announces becomes visible, and removed once the bus acknowledged the event.
type intent struct {
	ID      string          `json:"id"`
	Bucket  string          `json:"bucket"`
	Key     string          `json:"key"`
	Version string          `json:"version"` // the object version the event announces
	Subject string          `json:"subject"`
	MsgID   string          `json:"msgId"` // Nats-Msg-Id: repeats are dropped by JetStream
	Event   json.RawMessage `json:"event"`
	Created time.Time       `json:"created"`

	busy bool // a publisher is working on it (in memory only)
}

// journal keeps intents as one fsync'ed file each under dir.
type journal struct {
	dir     string
	mu      sync.Mutex
	pending map[string]*intent
	seq     uint64
}

func openJournal(dir string) (*journal, error) {
	j := &journal{dir: dir, pending: map[string]*intent{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, &StoreError{Path: dir, Reason: "cannot read journal", Err: err}
	}
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(dir, name)
		if strings.HasPrefix(name, ".tmp-") {
			os.Remove(p) // an intent that was never made durable
			continue
		}
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, &StoreError{Path: p, Reason: "cannot read intent", Err: err}
		}
		var in intent
		if err := json.Unmarshal(raw, &in); err != nil || in.ID+".json" != name || in.Subject == "" || in.MsgID == "" {
			return nil, &StoreError{Path: p, Reason: "intent file is corrupt", Err: err}
		}
		j.pending[in.ID] = &in
	}
	return j, nil
}

// add makes an intent durable.
func (j *journal) add(in *intent) error {
	j.mu.Lock()
	j.seq++
	in.ID = fmt.Sprintf("%016x-%06x-%s", in.Created.UnixNano(), j.seq&0xffffff, newID(4))
	in.busy = true
	j.mu.Unlock()
	raw, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(j.dir, in.ID+".json"), raw); err != nil {
		return &StoreError{Path: filepath.Join(j.dir, in.ID+".json"), Reason: "cannot write intent", Err: err}
	}
	j.mu.Lock()
	j.pending[in.ID] = in
	j.mu.Unlock()
	return nil
}

// done removes an intent whose event was acknowledged (or that announces nothing).
func (j *journal) done(in *intent) error {
	p := filepath.Join(j.dir, in.ID+".json")
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &StoreError{Path: p, Reason: "cannot clear intent", Err: err}
	}
	j.mu.Lock()
	delete(j.pending, in.ID)
	j.mu.Unlock()
	return nil
}

// release hands an intent back to the background retrier after a failed publish.
func (j *journal) release(in *intent) {
	j.mu.Lock()
	in.busy = false
	j.mu.Unlock()
}

// claim returns the idle pending intents, oldest first, marked busy.
func (j *journal) claim() []*intent {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []*intent
	for _, in := range j.pending {
		if !in.busy {
			in.busy = true
			out = append(out, in)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

func (j *journal) len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending)
}
