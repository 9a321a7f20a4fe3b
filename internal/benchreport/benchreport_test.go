package benchreport

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/testenv"
)

const sample = `# title: Image decode
# command: go test -bench DecodePNG512 ./internal/pipeline
# The fixture's real PNGs.
# Second line of the paragraph.
#
# Another paragraph.
goos: linux
goarch: amd64
pkg: github.com/hpa-plates/hpa/internal/pipeline
cpu: AMD EPYC 7B13
BenchmarkDecodePNG512/fast-2         	      20	  30000000 ns/op	   5.10 MB/s	 0.7500 ms/image	40 images
BenchmarkDecodePNG512/ratio-2        	      20	 120000000 ns/op	 2.920 x_vs_imagepng	40 images
some table line
PASS
ok  	github.com/hpa-plates/hpa/internal/pipeline	12.3s
`

func TestParseAndRender(t *testing.T) {
	s, err := Parse("docs/bench/decode.txt", strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if s.Title != "Image decode" || s.Command != "go test -bench DecodePNG512 ./internal/pipeline" || len(s.Prose) != 2 ||
		s.Prose[0] != "The fixture's real PNGs.\nSecond line of the paragraph." || len(s.Benches) != 2 {
		t.Fatalf("%+v", s)
	}
	if got := strings.Join(s.Units, ","); got != "ns/op,MB/s,ms/image,images,x_vs_imagepng" {
		t.Errorf("units %s", got)
	}
	if s.Benches[1].Metrics["x_vs_imagepng"] != 2.92 || s.Benches[0].N != 20 || s.Benches[1].Metrics["images"] != 40 {
		t.Errorf("benches %+v", s.Benches)
	}
	if len(s.Text) != 1 || s.Text[0] != "some table line" || len(s.Machine) != 3 {
		t.Errorf("text %q machine %q", s.Text, s.Machine)
	}
	doc := string(Render([]Section{s}, "docs/bench"))
	for _, want := range []string{
		"## Image decode", "Command: `go test -bench DecodePNG512 ./internal/pipeline`",
		"| benchmark | runs | ns/op | MB/s | ms/image | images | x_vs_imagepng |",
		"| `BenchmarkDecodePNG512/fast-2` | 20 | 30000000 | 5.1 | 0.75 | 40 | |",
		"| `BenchmarkDecodePNG512/ratio-2` | 20 | 120000000 | | | 40 | 2.92 |",
		"```\nsome table line\n```", "Machine: goos: linux, goarch: amd64, cpu: AMD EPYC 7B13",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q:\n%s", want, doc)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		"# command: x\nBenchmarkA 1 2 ns/op\n",                    // no title
		"# title: t\nBenchmarkA 1 2 ns/op\n",                      // no command
		"# title: t\n# command: c\n",                              // no output
		"# title: t\n# command: c\nBenchmarkA 1 2 ns/op x unit\n", // a value that is no number
	} {
		var fe *FormatError
		if _, err := Parse("f.txt", strings.NewReader(in)); !errors.As(err, &fe) {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// docs/benchmarks.md is what docs/bench/*.txt generate: nobody typed it.
func TestBenchmarksDocGenerated(t *testing.T) {
	root := testenv.RepoRoot(t)
	secs, err := ParseDir(filepath.Join(root, "docs", "bench"))
	if err != nil {
		t.Fatal(err)
	}
	// Render names the directory relative to the root, as make bench-report does.
	for i := range secs {
		rel, _ := filepath.Rel(root, secs[i].File)
		secs[i].File = filepath.ToSlash(rel)
	}
	want := Render(secs, "docs/bench")
	have, err := os.ReadFile(filepath.Join(root, "docs", "benchmarks.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, want) {
		t.Fatal("docs/benchmarks.md differs from what docs/bench/*.txt generate: run `make bench-report` (never edit it by hand)")
	}
}

// docs/quality.md is generated from the committed result rows of the quality benchmarks
// (docs/quality-rows.jsonl) by scripts/quality_doc.py; every number in it comes from a row.
func TestQualityDocGenerated(t *testing.T) {
	root := testenv.RepoRoot(t)
	want := runScript(t, "scripts/quality_doc.py", "--note-file", "docs/quality-notes.txt", "docs/quality-rows.jsonl")
	have, err := os.ReadFile(filepath.Join(root, "docs", "quality.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, want) {
		t.Fatal("docs/quality.md differs from what docs/quality-rows.jsonl generates: run `make quality-doc` (never edit it by hand)")
	}
	if !bytes.Contains(have, []byte("## The goal")) || !bytes.Contains(have, []byte("## The ensemble against its best member")) {
		t.Error("docs/quality.md lacks the goal or the ensemble table")
	}
}

// scripts/ensemble_heldout.py (quoted by docs/quality-findings.md) scores the ensemble and each
// member on a held-out set with their shipped thresholds and with the best thresholds on the held-out
// labels, and correlates the members' logits: checked on a hand-computed example.
func TestEnsembleHeldoutScript(t *testing.T) {
	dir := t.TempDir()
	ids := []string{"s1", "s2", "s3", "s4"}
	if err := os.WriteFile(filepath.Join(dir, "train.csv"), []byte("Id,Target\ns1,0\ns2,0 1\ns3,1\ns4,\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(sub string, probs [][2]float64, th [2]float64) {
		d := filepath.Join(dir, "out", sub)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			j := fmt.Sprintf(`{"sample_id":%q,"probabilities":[{"class_id":0,"p":%g},{"class_id":1,"p":%g}],"thresholds":{"values":[%g,%g]}}`,
				id, probs[i][0], probs[i][1], th[0], th[1])
			if err := os.WriteFile(filepath.Join(d, id+".json"), []byte(j), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// Error records and the 1-view run are not members.
		_ = os.WriteFile(filepath.Join(d, "s9.error.json"), []byte(`{"error":"x"}`), 0o644)
	}
	a := [][2]float64{{0.9, 0.1}, {0.8, 0.3}, {0.2, 0.7}, {0.6, 0.2}}
	b := [][2]float64{{0.4, 0.1}, {0.9, 0.6}, {0.1, 0.9}, {0.3, 0.2}}
	var ens [][2]float64
	for i := range a {
		ens = append(ens, [2]float64{(a[i][0] + b[i][0]) / 2, (a[i][1] + b[i][1]) / 2})
	}
	write("labels", ens, [2]float64{0.5, 0.5})
	write("labels-a", a, [2]float64{0.5, 0.5})
	write("labels-b", b, [2]float64{0.35, 0.5})
	write("labels-tta1", a, [2]float64{0.5, 0.5})
	out := runScript(t, "scripts/ensemble_heldout.py", filepath.Join(dir, "out"), dir)
	// By hand: a: class 0 F1 4/5 (s4 a false positive), class 1 F1 2/3 (s2 missed); both classes
	// separable, so the held-out optimum is 1. b: both right. Ensemble: class 1 misses s2 (0.45).
	logit := func(q float64) float64 { return math.Log(q / (1 - q)) }
	pearson := func(c int) float64 {
		var x, y []float64
		for i := range a {
			x, y = append(x, logit(a[i][c])), append(y, logit(b[i][c]))
		}
		mx, my := (x[0]+x[1]+x[2]+x[3])/4, (y[0]+y[1]+y[2]+y[3])/4
		var sxy, sxx, syy float64
		for i := range x {
			sxy += (x[i] - mx) * (y[i] - my)
			sxx += (x[i] - mx) * (x[i] - mx)
			syy += (y[i] - my) * (y[i] - my)
		}
		return sxy / math.Sqrt(sxx*syy)
	}
	want := fmt.Sprintf("%-26s shipped %.4f  oracle thresholds %.4f\n%-26s shipped %.4f  oracle thresholds %.4f\n%-26s shipped %.4f  oracle thresholds %.4f\nmembers' logits: mean correlation per class %.3f (2 members)\n",
		"labels", (1+2.0/3)/2, 1.0, "labels-a", (0.8+2.0/3)/2, 1.0, "labels-b", 1.0, 1.0, (pearson(0)+pearson(1))/2)
	if string(out) != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}

// runScript runs a standard-library Python script of scripts/ from the repository root and returns
// its standard output.
func runScript(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 (%s needs only its standard library): %v", script, err)
	}
	cmd := exec.Command(py, append([]string{script}, args...)...)
	cmd.Dir = testenv.RepoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.Bytes())
	}
	return out
}
