package labels

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/testenv"
)

func testModelInfo() ModelInfo {
	return ModelInfo{Name: "hpa-test", Version: "v3", ManifestDigest: "sha256:00ff", Members: 3, TTAViews: 8, Arch: "seresnext_tiny"}
}

func testProbs() []float64 {
	p := make([]float64, NumClasses)
	for k := range p {
		p[k] = float64(k) / 100 // 0.00 .. 0.27
	}
	p[0] = 0.123456789
	p[25] = 0.9999996 // rounds to 1.000000
	p[3] = 1.0 / 3
	p[1] = 1e-9 // rounds to 0.000000
	return p
}

func TestLabelRoundTrip(t *testing.T) {
	sources := []Source{
		{"red", "a_red.png", 10, "aa"}, {"green", "a_green.png", 11, "bb"},
		{"blue", "a_blue.png", 12, "cc"}, {"yellow", "a_yellow.png", 13, "dd"},
	}
	l, err := NewLabel("a", sources, testModelInfo(), UniformThresholds(0.2, NumClasses), testProbs())
	if err != nil {
		t.Fatal(err)
	}
	// > 0.2: 0.21 .. 0.27 (classes 21-27), 0.333 (3), 1.0 (25); 0.123 (0) and 0.20 (20) do not pass.
	want := []int{3, 21, 22, 23, 24, 25, 26, 27}
	if got := l.PredictedIDs(); !slices.Equal(got, want) {
		t.Errorf("predicted %v, want %v", got, want)
	}
	b, err := MarshalLabel(l)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, sub := range []string{
		`"p": 0.123457`, `"p": 0.333333`, `"p": 1.000000`, `"p": 0.000000`, `"p": 0.270000`,
		`"manifest_digest": "sha256:00ff"`, `"tta_views": 8`, `"name": "Rods & rings"`,
	} {
		if !strings.Contains(s, sub) {
			t.Errorf("label JSON lacks %s", sub)
		}
	}
	if !strings.HasPrefix(s, "{\n  \"schema\": \"hpa.label/v1\",\n  \"sample_id\": \"a\",\n  \"sources\": [") || !strings.HasSuffix(s, "}\n") {
		t.Errorf("unexpected layout:\n%s", s)
	}
	order := []string{`"schema"`, `"sample_id"`, `"sources"`, `"model"`, `"thresholds"`, `"probabilities"`, `"predicted"`}
	last := -1
	for _, k := range order {
		i := strings.Index(s, k)
		if i <= last {
			t.Errorf("key %s out of order", k)
		}
		last = i
	}
	if strings.Contains(s, "time") {
		t.Error("label JSON mentions time")
	}
	back, err := ParseLabel(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.SampleID != "a" || back.Model != testModelInfo() || !slices.Equal(back.PredictedIDs(), want) || back.Sources[3] != sources[3] {
		t.Errorf("parsed label differs: %+v", back)
	}
	b2, err := MarshalLabel(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Errorf("re-encoding changed the bytes:\n%s\n%s", b, b2)
	}
	// Same input, same bytes.
	l3, _ := NewLabel("a", sources, testModelInfo(), UniformThresholds(0.2, NumClasses), testProbs())
	b3, _ := MarshalLabel(l3)
	if !bytes.Equal(b, b3) {
		t.Error("two encodings of the same label differ")
	}
}

func TestLabelRoundingDecidesPrediction(t *testing.T) {
	// 0.2000004 rounds to 0.200000, which does not pass "> 0.2": what is written decides.
	p := make([]float64, NumClasses)
	p[5] = 0.2000004
	p[6] = 0.2000006
	l, err := NewLabel("x", nil, testModelInfo(), UniformThresholds(0.2, NumClasses), p)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.PredictedIDs(); !slices.Equal(got, []int{6}) {
		t.Errorf("predicted %v, want [6]", got)
	}
	b, err := MarshalLabel(l)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"sources": []`) {
		t.Error("nil sources should encode as []")
	}
}

func TestLabelErrors(t *testing.T) {
	var le *DocumentError
	th := UniformThresholds(0.2, NumClasses)
	if _, err := NewLabel("a", nil, testModelInfo(), th, make([]float64, 27)); !errors.As(err, &le) || le.SampleID != "a" {
		t.Errorf("27 probabilities: %v", err)
	}
	p := testProbs()
	p[4] = 1.5
	if _, err := NewLabel("a", nil, testModelInfo(), th, p); !errors.As(err, &le) {
		t.Errorf("p=1.5: %v", err)
	}
	if _, err := NewLabel("", nil, testModelInfo(), th, testProbs()); !errors.As(err, &le) {
		t.Errorf("empty id: %v", err)
	}
	if _, err := NewLabel("a", nil, testModelInfo(), UniformThresholds(0.2, 3), testProbs()); err == nil {
		t.Error("3 thresholds accepted")
	}
	l, _ := NewLabel("a", nil, testModelInfo(), th, testProbs())
	good, _ := MarshalLabel(l)
	for name, b := range map[string][]byte{
		"unknown field": bytes.Replace(good, []byte(`"schema"`), []byte(`"when": 1, "schema"`), 1),
		"schema":        bytes.Replace(good, []byte(LabelSchema), []byte("hpa.label/v9"), 1),
		"truncated":     good[:len(good)/2],
		"class order":   bytes.Replace(good, []byte(`"class_id": 1,`), []byte(`"class_id": 2,`), 1),
		"trailing":      append(slices.Clone(good), []byte("{}")...),
		"empty":         nil,
	} {
		if _, err := ParseLabel(b); !errors.As(err, &le) {
			t.Errorf("%s: ParseLabel gave %v", name, err)
		}
	}
}

func TestErrorRecord(t *testing.T) {
	mi := testModelInfo()
	ie := &pipeline.InputError{File: "/data/in/abc_green.png", Kind: pipeline.KindTruncated, Reason: "IDAT ends at byte 812"}
	r := NewErrorRecord("abc", fmt.Errorf("load: %w", ie), &mi)
	if r.File != "abc_green.png" || r.Kind != "truncated" || r.Reason != "IDAT ends at byte 812" || r.Schema != ErrorSchema {
		t.Errorf("record %+v", r)
	}
	b, err := MarshalError(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "schema": "hpa.error/v1",
  "sample_id": "abc",
  "file": "abc_green.png",
  "kind": "truncated",
  "reason": "IDAT ends at byte 812",
  "model": {
    "name": "hpa-test",
    "version": "v3",
    "manifest_digest": "sha256:00ff",
    "members": 3,
    "tta_views": 8,
    "arch": "seresnext_tiny"
  }
}
`
	if string(b) != want {
		t.Errorf("error JSON:\n%s\nwant:\n%s", b, want)
	}
	back, err := ParseErrorRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.File != r.File || back.Kind != r.Kind || *back.Model != mi {
		t.Errorf("parsed %+v", back)
	}
	// sample-level input error: the file is the sample id, so no file field
	r = NewErrorRecord("abc", &pipeline.InputError{File: "abc", Kind: pipeline.KindSizeMismatch, Reason: "red 64x64, green 32x32"}, nil)
	if r.File != "" || r.Kind != "size_mismatch" {
		t.Errorf("sample-level record %+v", r)
	}
	r = NewErrorRecord("abc", errors.New("ort: run failed"), nil)
	if r.Kind != "inference" || r.Reason != "ort: run failed" {
		t.Errorf("inference record %+v", r)
	}
	b, _ = MarshalError(r)
	if strings.Contains(string(b), "model") || strings.Contains(string(b), "file") {
		t.Errorf("empty optional fields written: %s", b)
	}
	if _, err := ParseErrorRecord([]byte(`{"schema":"hpa.error/v1","sample_id":"a","reason":"x"}`)); err == nil {
		t.Error("record without kind accepted")
	}
	if _, err := MarshalError(ErrorRecord{Schema: ErrorSchema, Kind: "io"}); err == nil {
		t.Error("record without sample id accepted")
	}
}

func TestDescribeSourceRealFile(t *testing.T) {
	dir := filepath.Join(testenv.HPAFixture(t), "train_sample")
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		t.Fatalf("read %s: %v", dir, err)
	}
	path := filepath.Join(dir, ents[0].Name())
	src, err := DescribeFile(pipeline.Green, path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if src != SourceOf(pipeline.Green, ents[0].Name(), data) || src.Channel != "green" || src.Size != int64(len(data)) || len(src.SHA256) != 64 {
		t.Errorf("source %+v", src)
	}
	var ie *pipeline.InputError
	if _, err := DescribeFile(pipeline.Red, filepath.Join(dir, "missing_red.png")); !errors.As(err, &ie) || ie.Kind != pipeline.KindIO {
		t.Errorf("missing file: %v", err)
	}
}
