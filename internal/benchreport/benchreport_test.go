package benchreport

import (
	"bytes"
	"errors"
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
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 (scripts/quality_doc.py needs only its standard library): %v", err)
	}
	cmd := exec.Command(py, "scripts/quality_doc.py", "--note-file", "docs/quality-notes.txt", "docs/quality-rows.jsonl")
	cmd.Dir = root
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("quality_doc.py: %v", err)
	}
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
