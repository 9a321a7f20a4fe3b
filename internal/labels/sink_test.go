package labels

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDirSinkKeepsOneRecordPerSample(t *testing.T) {
	dir := t.TempDir()
	s := DirSink{Dir: dir}
	ctx := context.Background()
	ref := Ref{ID: "x"}
	if err := s.WriteError(ctx, ref, []byte("err")); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteLabel(ctx, ref, []byte("label")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "x.json")); string(b) != "label" {
		t.Errorf("label %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.error.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale error record: %v", err)
	}
	if err := s.WriteError(ctx, ref, []byte("err2")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale label: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("left %d files (temporary files?)", len(ents))
	}
	// A directory where the temporary file must go: the write fails naming the label.
	os.Mkdir(filepath.Join(dir, "y.json.tmp"), 0o755)
	if err := s.WriteLabel(ctx, Ref{ID: "y"}, []byte("l")); err == nil || !strings.Contains(err.Error(), "y.json") {
		t.Errorf("failed write: %v", err)
	}
	csv := filepath.Join(dir, "sub", "s.csv")
	if err := WriteSubmissionFile(csv, []SubmissionRow{{ID: "b", Predicted: []int{2}}, {ID: "a"}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(csv); string(b) != "Id,Predicted\na,\nb,2\n" {
		t.Errorf("submission %q", b)
	}
}

type memObjects map[string][]byte

func (m memObjects) Get(_ context.Context, key string, _ int64) ([]byte, error) {
	if b, ok := m[key]; ok {
		return b, nil
	}
	return nil, os.ErrNotExist
}
func (m memObjects) Put(_ context.Context, key string, data []byte, _ string) error {
	m[key] = data
	return nil
}
func (m memObjects) Delete(_ context.Context, key string) error { delete(m, key); return nil }

func TestObjectSinkKeys(t *testing.T) {
	m := memObjects{}
	s := ObjectSink{Store: m, Prefix: "labels/"}
	ctx := context.Background()
	ref := Ref{Plate: "plate 1", ID: "s"}
	if s.LabelKey(ref) != "labels/plate 1/s.json" || s.ErrorKey(ref) != "labels/plate 1/s.error.json" || s.SubmissionKey("p") != "labels/p/submission.csv" {
		t.Error("keys")
	}
	s.WriteError(ctx, ref, []byte("e"))
	if err := s.WriteLabel(ctx, ref, []byte("l")); err != nil {
		t.Fatal(err)
	}
	if b, err := s.ReadLabel(ctx, ref); err != nil || string(b) != "l" || m[s.ErrorKey(ref)] != nil {
		t.Errorf("label %q %v, objects %v", b, err, m)
	}
	s.WriteError(ctx, ref, []byte("e2"))
	if string(m[s.LabelKey(ref)]) != "l" {
		t.Error("an error record must not remove the sample's last label")
	}
	if err := s.WriteSubmission(ctx, "p", []SubmissionRow{{ID: "a", Predicted: []int{0}}}); err != nil || string(m["labels/p/submission.csv"]) != "Id,Predicted\na,0\n" {
		t.Errorf("submission %q %v", m["labels/p/submission.csv"], err)
	}
}
