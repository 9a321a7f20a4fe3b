package viewer

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/image/tiff"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// memStore is an in-memory ObjectStore with a settable clock.
type memStore struct {
	mu    sync.Mutex
	objs  map[string]memObj
	now   time.Time
	gets  map[string]int
	lists int
}

type memObj struct {
	data []byte
	mod  time.Time
	etag string
}

func newMemStore() *memStore {
	return &memStore{objs: map[string]memObj{}, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), gets: map[string]int{}}
}

func (m *memStore) put(key string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = m.now.Add(time.Second)
	m.objs[key] = memObj{data: bytes.Clone(data), mod: m.now, etag: fmt.Sprintf("%x-%d", len(data), m.now.UnixNano())}
}

func (m *memStore) List(_ context.Context, prefix string) ([]Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lists++
	var out []Object
	for k, o := range m.objs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, Object{Key: k, ETag: o.etag, Size: int64(len(o.data)), Modified: o.mod})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (m *memStore) Get(_ context.Context, key string, max int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets[key]++
	o, ok := m.objs[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if max > 0 && int64(len(o.data)) > max {
		return nil, fmt.Errorf("%s: %w", key, ErrTooLarge)
	}
	return bytes.Clone(o.data), nil
}

func (m *memStore) Put(_ context.Context, key string, data []byte, _ string) error {
	m.put(key, data)
	return nil
}

func (m *memStore) getCount(key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gets[key]
}

func (m *memStore) keys(prefix string) []string {
	objs, _ := m.List(context.Background(), prefix)
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.Key)
	}
	return ks
}

// grayPNG is a w x h 8-bit grayscale PNG whose pixel (x, y) is f(x, y).
func grayPNG(w, h int, f func(x, y int) uint8) []byte {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Pix[y*w+x] = f(x, y)
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

func flatPNG(w, h int, v uint8) []byte { return grayPNG(w, h, func(int, int) uint8 { return v }) }

// uploadSample stores the four channels of a sample (flat images of the given values).
func uploadSample(m *memStore, plate, id string, size int, vals [4]uint8) {
	for c, n := range pipeline.ChannelNames {
		m.put("incoming/"+plate+"/"+id+"_"+n+".png", flatPNG(size, size, vals[c]))
	}
}

// mkLabel is a valid label of sample id whose class probabilities are probs (others 0.01),
// thresholds uniform 0.5.
func mkLabel(t testing.TB, id, version string, probs map[int]float64) []byte {
	t.Helper()
	p := make([]float64, labels.NumClasses)
	for k := range p {
		p[k] = 0.01
	}
	for k, v := range probs {
		p[k] = v
	}
	src := make([]labels.Source, 4)
	for c, n := range pipeline.ChannelNames {
		src[c] = labels.SourceOf(pipeline.Channel(c), id+"_"+n+".png", []byte(n))
	}
	l, err := labels.NewLabel(id, src, labels.ModelInfo{Name: "hpa-test", Version: version, ManifestDigest: "sha256:" + strings.Repeat("ab", 32),
		Members: 2, TTAViews: 8, Arch: "seresnext_tiny"}, labels.UniformThresholds(0.5, labels.NumClasses), p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := labels.MarshalLabel(l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mkError(t testing.TB, id, kind string) []byte {
	t.Helper()
	b, err := labels.MarshalError(labels.ErrorRecord{Schema: labels.ErrorSchema, SampleID: id, Kind: kind,
		Reason: "sample " + id + ": the green channel is " + kind, Object: "incoming/p/" + id + "_green.png"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const testKey, testSecret = "AKTEST", "secret-test"

// newTestViewer serves a viewer over store; cfg tweaks the configuration.
func newTestViewer(t testing.TB, store ObjectStore, tweak func(*Config)) (*Viewer, *httptest.Server) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Bucket, cfg.AccessKey, cfg.SecretKey = "plates", testKey, testSecret
	cfg.ThumbSize, cfg.ViewSize = 16, 32
	if tweak != nil {
		tweak(&cfg)
	}
	v, err := New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(v.Handler())
	t.Cleanup(func() { srv.Close(); v.Close() })
	return v, srv
}

// get fetches path with the test credentials and returns the status and body.
func get(t testing.TB, srv *httptest.Server, path string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	req.SetBasicAuth(testKey, testSecret)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// pngGray16 is a flat 16-bit grayscale PNG.
func pngGray16(w, h int, v uint16) []byte {
	img := image.NewGray16(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 2 {
		img.Pix[i], img.Pix[i+1] = uint8(v>>8), uint8(v)
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

// tiffGray is a flat 8-bit grayscale TIFF.
func tiffGray(w, h int, v uint8) []byte {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = v
	}
	var buf bytes.Buffer
	_ = tiff.Encode(&buf, img, nil)
	return buf.Bytes()
}

// tiffRGB is a flat RGB TIFF.
func tiffRGB(w, h int, r, g, b uint8) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = r, g, b, 255
	}
	var buf bytes.Buffer
	_ = tiff.Encode(&buf, img, nil)
	return buf.Bytes()
}
