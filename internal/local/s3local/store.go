package s3local

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// On-disk layout under Options.Dir:
//
//	buckets/<bucket>/bucket.json                       bucket record (creation time)
//	buckets/<bucket>/objects/<h[0:2]>/<h>.json         object metadata sidecar: the commit point
//	buckets/<bucket>/objects/<h[0:2]>/<h>.<ver>.data   object content of one version
//	uploads/<upload-id>/upload.json, part-NNNNN.data, part-NNNNN.json   multipart uploads
//	journal/<intent-id>.json                            pending event intents (see journal.go)
//	tmp/                                                staging files, emptied at start
//
// where h is the hex SHA-256 of the object key. Hashing makes every valid S3 key storable,
// including keys that would collide as paths ("a" and "a/b"), keys with "//" or trailing "/",
// and keys longer than a file name may be; the key itself lives in the sidecar. A write stages the
// content in tmp/, renames it to a fresh version file, then atomically replaces the sidecar (the
// commit), then deletes the previous version file. Version files no sidecar points at are
// leftovers of an interrupted write and are removed at start.

type objectMeta struct {
	Key                string            `json:"key"`
	Size               int64             `json:"size"`
	ETag               string            `json:"etag"` // hex, without quotes; "<hex>-N" for multipart
	LastModified       time.Time         `json:"lastModified"`
	Version            string            `json:"version"`
	ContentType        string            `json:"contentType,omitempty"`
	ContentEncoding    string            `json:"contentEncoding,omitempty"`
	ContentDisposition string            `json:"contentDisposition,omitempty"`
	ContentLanguage    string            `json:"contentLanguage,omitempty"`
	CacheControl       string            `json:"cacheControl,omitempty"`
	Expires            string            `json:"expires,omitempty"`
	UserMeta           map[string]string `json:"userMeta,omitempty"`
	Checksums          map[string]string `json:"checksums,omitempty"`
	Parts              int               `json:"parts,omitempty"`
}

type bucketState struct {
	created time.Time
	objects map[string]*objectMeta
	keys    []string // sorted
}

type store struct {
	dir     string
	mu      sync.RWMutex
	buckets map[string]*bucketState
}

// StoreError reports a storage problem with the file or object involved.
type StoreError struct {
	Path   string
	Reason string
	Err    error
}

func (e *StoreError) Error() string {
	s := "s3local: store " + e.Path + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *StoreError) Unwrap() error { return e.Err }

func keyHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func newID(nbytes int) string {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

func (s *store) bucketDir(b string) string { return filepath.Join(s.dir, "buckets", b) }
func (s *store) tmpDir() string            { return filepath.Join(s.dir, "tmp") }

func (s *store) objPaths(bucket, key, version string) (meta, data string) {
	h := keyHash(key)
	base := filepath.Join(s.bucketDir(bucket), "objects", h[:2], h)
	return base + ".json", base + "." + version + ".data"
}

func openStore(dir string) (*store, error) {
	s := &store{dir: dir, buckets: map[string]*bucketState{}}
	for _, d := range []string{"buckets", "uploads", "journal"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, &StoreError{Path: filepath.Join(dir, d), Reason: "cannot create", Err: err}
		}
	}
	if err := os.RemoveAll(s.tmpDir()); err != nil {
		return nil, &StoreError{Path: s.tmpDir(), Reason: "cannot clean", Err: err}
	}
	if err := os.MkdirAll(s.tmpDir(), 0o755); err != nil {
		return nil, &StoreError{Path: s.tmpDir(), Reason: "cannot create", Err: err}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "buckets"))
	if err != nil {
		return nil, &StoreError{Path: filepath.Join(dir, "buckets"), Reason: "cannot read", Err: err}
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if err := s.loadBucket(e.Name()); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *store) loadBucket(name string) error {
	bdir := s.bucketDir(name)
	rec := filepath.Join(bdir, "bucket.json")
	raw, err := os.ReadFile(rec)
	if err != nil {
		return &StoreError{Path: rec, Reason: "bucket record unreadable", Err: err}
	}
	var br struct {
		Created time.Time `json:"created"`
	}
	if err := json.Unmarshal(raw, &br); err != nil {
		return &StoreError{Path: rec, Reason: "bucket record is not valid JSON", Err: err}
	}
	b := &bucketState{created: br.Created, objects: map[string]*objectMeta{}}
	objDir := filepath.Join(bdir, "objects")
	live := map[string]bool{}
	var dataFiles []string
	err = filepath.WalkDir(objDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		switch {
		case strings.HasSuffix(p, ".data"):
			dataFiles = append(dataFiles, p)
		case strings.HasSuffix(p, ".json"):
			raw, err := os.ReadFile(p)
			if err != nil {
				return &StoreError{Path: p, Reason: "object sidecar unreadable", Err: err}
			}
			var m objectMeta
			if err := json.Unmarshal(raw, &m); err != nil || m.Key == "" || m.Version == "" {
				return &StoreError{Path: p, Reason: "object sidecar is not valid", Err: err}
			}
			if want := filepath.Join(objDir, keyHash(m.Key)[:2], keyHash(m.Key)+".json"); want != p {
				return &StoreError{Path: p, Reason: "sidecar of key " + fmt.Sprintf("%q", m.Key) + " is not at its hashed path"}
			}
			_, data := s.objPaths(name, m.Key, m.Version)
			if _, err := os.Stat(data); err != nil {
				return &StoreError{Path: data, Reason: fmt.Sprintf("content of s3://%s/%s is missing", name, m.Key), Err: err}
			}
			live[data] = true
			mm := m
			b.objects[m.Key] = &mm
			b.keys = append(b.keys, m.Key)
		}
		return nil
	})
	if err != nil {
		var se *StoreError
		if errors.As(err, &se) {
			return se
		}
		return &StoreError{Path: objDir, Reason: "cannot scan", Err: err}
	}
	// Version files without a sidecar are leftovers of interrupted writes.
	for _, p := range dataFiles {
		if !live[p] {
			_ = os.Remove(p)
		}
	}
	sort.Strings(b.keys)
	s.buckets[name] = b
	return nil
}

// syncDir fsyncs a directory so that renames and creations in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeFileAtomic writes data to path via a synced temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func (s *store) createBucket(name string, now time.Time) *APIError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.buckets[name]; ok {
		return (&APIError{Code: "BucketAlreadyOwnedByYou", Status: http.StatusConflict, Message: "Your previous request to create the named bucket succeeded and you already own it."}).at(name, "")
	}
	raw, _ := json.Marshal(map[string]time.Time{"created": now.UTC()})
	if err := writeFileAtomic(filepath.Join(s.bucketDir(name), "bucket.json"), raw); err != nil {
		return errInternal(&StoreError{Path: s.bucketDir(name), Reason: "cannot create bucket", Err: err})
	}
	s.buckets[name] = &bucketState{created: now.UTC(), objects: map[string]*objectMeta{}}
	return nil
}

func (s *store) deleteBucket(name string) *APIError {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[name]
	if !ok {
		return errNoSuchBucket(name)
	}
	if len(b.keys) > 0 {
		return (&APIError{Code: "BucketNotEmpty", Status: http.StatusConflict, Message: "The bucket you tried to delete is not empty"}).at(name, "")
	}
	if err := os.RemoveAll(s.bucketDir(name)); err != nil {
		return errInternal(&StoreError{Path: s.bucketDir(name), Reason: "cannot delete bucket", Err: err})
	}
	delete(s.buckets, name)
	return nil
}

type bucketInfo struct {
	Name    string
	Created time.Time
}

func (s *store) listBuckets() []bucketInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]bucketInfo, 0, len(s.buckets))
	for n, b := range s.buckets {
		out = append(out, bucketInfo{n, b.created})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (s *store) hasBucket(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.buckets[name]
	return ok
}

// stage copies r into a synced file under tmp/ and returns its path; the caller commits or
// removes it.
func (s *store) stage(r io.Reader) (path string, n int64, err error) {
	f, err := os.CreateTemp(s.tmpDir(), "put-*")
	if err != nil {
		return "", 0, errInternal(&StoreError{Path: s.tmpDir(), Reason: "cannot create staging file", Err: err})
	}
	path = f.Name()
	n, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		var ae *APIError
		if errors.As(err, &ae) {
			return "", 0, ae
		}
		return "", 0, errInternal(&StoreError{Path: path, Reason: "cannot write staging file", Err: err})
	}
	return path, n, nil
}

// commit makes a staged file the content of m.Key in bucket: version file, then the sidecar.
// precond, when not nil, is checked against the current object (nil when absent) atomically
// with the commit; its error aborts the commit.
func (s *store) commit(bucket string, m *objectMeta, staged string, precond func(old *objectMeta) *APIError) *APIError {
	metaPath, dataPath := s.objPaths(bucket, m.Key, m.Version)
	raw, err := json.Marshal(m)
	if err != nil {
		return errInternal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dataPath), 0o755); err != nil {
		return errInternal(&StoreError{Path: filepath.Dir(dataPath), Reason: "cannot create", Err: err})
	}
	if err := os.Rename(staged, dataPath); err != nil {
		return errInternal(&StoreError{Path: dataPath, Reason: "cannot place content", Err: err})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[bucket]
	if !ok {
		os.Remove(dataPath)
		return errNoSuchBucket(bucket)
	}
	if precond != nil {
		if e := precond(b.objects[m.Key]); e != nil {
			os.Remove(dataPath)
			return e
		}
	}
	if err := writeFileAtomic(metaPath, raw); err != nil {
		os.Remove(dataPath)
		return errInternal(&StoreError{Path: metaPath, Reason: "cannot write object sidecar", Err: err})
	}
	old := b.objects[m.Key]
	b.objects[m.Key] = m
	if old == nil {
		i := sort.SearchStrings(b.keys, m.Key)
		b.keys = append(b.keys, "")
		copy(b.keys[i+1:], b.keys[i:])
		b.keys[i] = m.Key
	} else if old.Version != m.Version {
		_, oldData := s.objPaths(bucket, m.Key, old.Version)
		os.Remove(oldData) // readers that opened it keep their handle
	}
	return nil
}

// head returns the metadata of an object.
func (s *store) head(bucket, key string) (*objectMeta, *APIError) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.buckets[bucket]
	if !ok {
		return nil, errNoSuchBucket(bucket)
	}
	m, ok := b.objects[key]
	if !ok {
		return nil, errNoSuchKey(bucket, key)
	}
	return m, nil
}

// open returns the metadata and an open content file of an object, consistently.
func (s *store) open(bucket, key string) (*objectMeta, *os.File, *APIError) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.buckets[bucket]
	if !ok {
		return nil, nil, errNoSuchBucket(bucket)
	}
	m, ok := b.objects[key]
	if !ok {
		return nil, nil, errNoSuchKey(bucket, key)
	}
	_, data := s.objPaths(bucket, key, m.Version)
	f, err := os.Open(data)
	if err != nil {
		return nil, nil, errInternal(&StoreError{Path: data, Reason: fmt.Sprintf("content of s3://%s/%s unreadable", bucket, key), Err: err})
	}
	return m, f, nil
}

// remove deletes an object; deleting a missing key is not an error (as in S3).
func (s *store) remove(bucket, key string) *APIError {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[bucket]
	if !ok {
		return errNoSuchBucket(bucket)
	}
	m, ok := b.objects[key]
	if !ok {
		return nil
	}
	metaPath, dataPath := s.objPaths(bucket, key, m.Version)
	if err := os.Remove(metaPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return errInternal(&StoreError{Path: metaPath, Reason: "cannot delete", Err: err})
	}
	_ = syncDir(filepath.Dir(metaPath))
	os.Remove(dataPath)
	delete(b.objects, key)
	i := sort.SearchStrings(b.keys, key)
	if i < len(b.keys) && b.keys[i] == key {
		b.keys = append(b.keys[:i], b.keys[i+1:]...)
	}
	return nil
}

type listing struct {
	objects   []objectMeta
	prefixes  []string
	truncated bool
	last      string // last key or common prefix returned
}

// list walks keys after `after` under prefix, rolling keys up to common prefixes at delimiter.
// Objects and common prefixes together are at most max.
func (s *store) list(bucket, prefix, delimiter, after string, max int) (*listing, *APIError) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.buckets[bucket]
	if !ok {
		return nil, errNoSuchBucket(bucket)
	}
	out := &listing{}
	start := prefix
	if after > start {
		start = after
	}
	i := sort.SearchStrings(b.keys, start)
	lastCP := ""
	for i < len(b.keys) {
		k := b.keys[i]
		if k <= after {
			i++
			continue
		}
		if !strings.HasPrefix(k, prefix) {
			break
		}
		if delimiter != "" {
			if j := strings.Index(k[len(prefix):], delimiter); j >= 0 {
				cp := k[:len(prefix)+j+len(delimiter)]
				// Skip every key under this prefix in one step.
				next := i + sort.Search(len(b.keys)-i, func(n int) bool {
					kk := b.keys[i+n]
					return kk > cp && !strings.HasPrefix(kk, cp)
				})
				if cp != lastCP && cp > after {
					if len(out.objects)+len(out.prefixes) >= max {
						out.truncated = true
						return out, nil
					}
					out.prefixes = append(out.prefixes, cp)
					out.last = cp
					lastCP = cp
				}
				i = next
				continue
			}
		}
		if len(out.objects)+len(out.prefixes) >= max {
			out.truncated = true
			return out, nil
		}
		out.objects = append(out.objects, *b.objects[k])
		out.last = k
		i++
	}
	return out, nil
}
