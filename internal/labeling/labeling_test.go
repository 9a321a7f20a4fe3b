package labeling

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

func grayPNG(t testing.TB, size int, seed int) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, size, size))
	for i := range img.Pix {
		img.Pix[i] = uint8((i*7 + seed*31) % 251)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// memStore is an objstore.Store in memory; fail makes every Get fail with a transient error.
type memStore struct {
	objs map[string][]byte
	fail bool
	gets int
}

func (m *memStore) Get(_ context.Context, key string, max int64) ([]byte, error) {
	m.gets++
	if m.fail {
		return nil, &objstore.Error{Op: "get", Bucket: "b", Key: key, Err: errors.New("connection reset")}
	}
	b, ok := m.objs[key]
	if !ok {
		return nil, &objstore.Error{Op: "get", Bucket: "b", Key: key, NotFound: true}
	}
	if max > 0 && int64(len(b)) > max {
		return nil, &objstore.Error{Op: "get", Bucket: "b", Key: key, TooLarge: true}
	}
	return b, nil
}
func (m *memStore) Put(_ context.Context, key string, data []byte, _ string) error {
	m.objs[key] = data
	return nil
}
func (m *memStore) Delete(_ context.Context, key string) error                  { delete(m.objs, key); return nil }
func (m *memStore) List(context.Context, string) ([]objstore.ObjectInfo, error) { return nil, nil }

// The same sample read from a directory and from an object store assembles to the same image and
// sources: one implementation of the step for `hpa label` and the service.
func TestAssembleDirAndObjectsAgree(t *testing.T) {
	dir := t.TempDir()
	store := &memStore{objs: map[string][]byte{}}
	var fileSample, objSample Sample
	fileSample.ID, objSample.ID, objSample.Plate = "s1", "s1", "p"
	for c, ch := range pipeline.ChannelNames {
		b := grayPNG(t, 24, c)
		path := filepath.Join(dir, "s1_"+ch+".png")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		fileSample.Keys[c] = path
		objSample.Keys[c] = "incoming/p/s1_" + ch + ".png"
		store.objs[objSample.Keys[c]] = b
	}
	ctx := context.Background()
	a, err := Assemble(ctx, DirFetcher{}, fileSample, pipeline.DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Assemble(ctx, ObjectFetcher{Store: store}, objSample, pipeline.DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("directory and object store assemble differently:\n%+v\n%+v", a.Sources, b.Sources)
	}
	want, err := labels.DescribeFile(pipeline.Yellow, fileSample.Keys[pipeline.Yellow])
	if err != nil || a.Sources[3] != want || a.Sources[3].Name != "s1_yellow.png" {
		t.Errorf("yellow source %+v, want %+v (%v)", a.Sources[3], want, err)
	}
	if a.Image.W != 24 || a.Image.ID != "s1" {
		t.Errorf("image %dx%d %q", a.Image.W, a.Image.H, a.Image.ID)
	}
}

func TestAssemblePoisonAndTransient(t *testing.T) {
	ctx := context.Background()
	store := &memStore{objs: map[string][]byte{}}
	s := Sample{Plate: "p", ID: "x"}
	for c, ch := range pipeline.ChannelNames {
		s.Keys[c] = "k/x_" + ch + ".png"
		store.objs[s.Keys[c]] = grayPNG(t, 16, c)
	}
	kind := func(err error) string { return string(pipeline.KindOf(err)) }
	// Missing object: poison, named.
	delete(store.objs, s.Keys[pipeline.Blue])
	_, err := Assemble(ctx, ObjectFetcher{Store: store}, s, pipeline.DecodeOptions{})
	var ie *pipeline.InputError
	if !errors.As(err, &ie) || kind(err) != "missing_channel" || ie.File != s.Keys[pipeline.Blue] ||
		ie.Reason != "sample x: blue channel object k/x_blue.png does not exist" {
		t.Errorf("missing object: %v", err)
	}
	// Oversized, corrupt, other size.
	store.objs[s.Keys[pipeline.Blue]] = grayPNG(t, 16, 2)
	if _, err := Assemble(ctx, ObjectFetcher{Store: store, MaxBytes: 10}, s, pipeline.DecodeOptions{}); kind(err) != "too_large" {
		t.Errorf("too large: %v", err)
	}
	store.objs[s.Keys[pipeline.Green]] = []byte("not an image at all")
	if _, err := Assemble(ctx, ObjectFetcher{Store: store}, s, pipeline.DecodeOptions{}); kind(err) == "" || IsTransient(err) {
		t.Errorf("corrupt: %v", err)
	}
	store.objs[s.Keys[pipeline.Green]] = grayPNG(t, 20, 1)
	_, err = Assemble(ctx, ObjectFetcher{Store: store}, s, pipeline.DecodeOptions{})
	if kind(err) != "size_mismatch" || !strings.Contains(err.Error(), "green channel is 20x20 but red is 16x16") {
		t.Errorf("size mismatch: %v", err)
	}
	// A store failing is transient, after a few attempts in place.
	store.fail, store.gets = true, 0
	retries := 0
	_, err = Assemble(ctx, ObjectFetcher{Store: store, OnRetry: func() { retries++ }}, s, pipeline.DecodeOptions{})
	if !IsTransient(err) || store.gets != 4 || retries != 4 || !strings.HasPrefix(err.Error(), "get k/x_red.png: ") {
		t.Errorf("failing store: %v after %d gets, %d retries", err, store.gets, retries)
	}
	// A missing file.
	dir := t.TempDir()
	_, err = Assemble(ctx, DirFetcher{}, Sample{ID: "y", Keys: [4]string{filepath.Join(dir, "y_red.png")}}, pipeline.DecodeOptions{})
	if kind(err) != "missing_channel" || !strings.Contains(err.Error(), "red channel file does not exist") {
		t.Errorf("missing file: %v", err)
	}
}

// fakeModel fails every batch that holds the sample named "bad".
type fakeModel struct{ calls int }

func (f *fakeModel) Predict(_ context.Context, batch []pipeline.Image4) ([][]float64, error) {
	f.calls++
	out := make([][]float64, len(batch))
	for i, img := range batch {
		if img.ID == "bad" {
			return nil, fmt.Errorf("sample %s: tensor shape", img.ID)
		}
		out[i] = make([]float64, labels.NumClasses)
		out[i][i%labels.NumClasses] = 0.9
	}
	return out, nil
}
func (f *fakeModel) Info() labels.ModelInfo {
	return labels.ModelInfo{Name: "fake", Version: "1", ManifestDigest: "sha256:f", Members: 1, TTAViews: 1, Arch: "fake"}
}
func (f *fakeModel) Thresholds() labels.Thresholds {
	return labels.UniformThresholds(0.5, labels.NumClasses)
}

// A failing batch is run sample by sample: only the bad sample fails.
func TestPredictIsolatesFailingSamples(t *testing.T) {
	m := &fakeModel{}
	imgs := []pipeline.Image4{{ID: "a"}, {ID: "bad"}, {ID: "c"}}
	probs, errs, batchErr := Predict(context.Background(), m, imgs)
	if batchErr == nil || m.calls != 4 {
		t.Fatalf("batch error %v after %d calls", batchErr, m.calls)
	}
	if errs[0] != nil || errs[2] != nil || errs[1] == nil || probs[1] != nil || probs[0][0] != 0.9 || probs[2][0] != 0.9 {
		t.Errorf("errs %v probs %v", errs, probs)
	}
	m.calls = 0
	_, errs, batchErr = Predict(context.Background(), m, imgs[:1])
	if batchErr != nil || errs[0] != nil || m.calls != 1 {
		t.Errorf("good batch: %v %v, %d calls", batchErr, errs, m.calls)
	}
	_, errs, _ = Predict(context.Background(), m, imgs[1:2])
	if errs[0] == nil || m.calls != 2 {
		t.Errorf("a failing batch of one is not run twice: %v, %d calls", errs, m.calls)
	}
}

func TestLabelAndFailureRecords(t *testing.T) {
	m := &fakeModel{}
	probs := make([]float64, labels.NumClasses)
	probs[3] = 0.75
	l, b, err := Label("s", nil, m.Info(), m.Thresholds(), probs)
	if err != nil || fmt.Sprint(l.PredictedIDs()) != "[3]" || !bytes.HasPrefix(b, []byte("{\n  \"schema\": \"hpa.label/v1\"")) {
		t.Fatalf("label %v %s %v", l.PredictedIDs(), b, err)
	}
	probs[4] = 2
	var de *labels.DocumentError
	if _, _, err := Label("s", nil, m.Info(), m.Thresholds(), probs); !errors.As(err, &de) {
		t.Errorf("probability 2 accepted: %v", err)
	}
	info := m.Info()
	poison := &pipeline.InputError{File: "incoming/p/s_green.png", Kind: pipeline.KindTruncated, Reason: "IDAT ends early"}
	if rec := Failure("s", poison, &info, true); rec.Object != "incoming/p/s_green.png" || rec.File != "" || rec.Kind != "truncated" {
		t.Errorf("object record %+v", rec)
	}
	if rec := Failure("s", poison, &info, false); rec.File != "s_green.png" || rec.Object != "" {
		t.Errorf("file record %+v", rec)
	}
	tr := &TransientError{Op: "infer", Err: errors.New("CUDA out of memory")}
	if rec := Failure("s", tr, nil, true); rec.Kind != KindRetriesExhausted || rec.Reason != "infer: CUDA out of memory" {
		t.Errorf("exhausted record %+v", rec)
	}
	f := &Failed{Record: Failure("s", poison, nil, true), Err: poison}
	if !errors.Is(f, poison) || f.Error() != "truncated: IDAT ends early" {
		t.Errorf("failed %v", f)
	}
}

func TestDirInput(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewDirInput(dir); !errors.Is(err, ErrNoSamples) {
		t.Errorf("empty directory: %v", err)
	}
	for _, id := range []string{"b", "a"} {
		for c, ch := range pipeline.ChannelNames {
			os.WriteFile(filepath.Join(dir, id+"_"+ch+".png"), grayPNG(t, 8, c), 0o644)
		}
	}
	os.WriteFile(filepath.Join(dir, "c_red.png"), grayPNG(t, 8, 0), 0o644)
	in, err := NewDirInput(dir)
	if err != nil {
		t.Fatal(err)
	}
	if in.Len() != 2 || len(in.Incomplete) != 1 || in.Incomplete[0].ID != "c" {
		t.Fatalf("%d complete, incomplete %+v", in.Len(), in.Incomplete)
	}
	ctx := context.Background()
	var ids []string
	for {
		m, ack, err := in.Read(ctx)
		if errors.Is(err, ErrEndOfInput) {
			break
		}
		if err != nil || !m.Final || m.Attempt != 1 {
			t.Fatalf("read %+v %v", m, err)
		}
		ids = append(ids, m.Sample.ID)
		if m.Sample.ID == "a" {
			ack(ctx, nil)
		} else {
			ack(ctx, &Failed{})
		}
	}
	if fmt.Sprint(ids) != "[a b]" || in.Stats.Labeled != 1 || in.Stats.Failed != 1 {
		t.Errorf("read %v, stats %+v", ids, in.Stats)
	}
}
