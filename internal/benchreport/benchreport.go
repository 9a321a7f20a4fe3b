// Package benchreport generates docs/benchmarks.md from the saved outputs of the benchmark commands
// (docs/bench/*.txt), so that the document says what the code measured and nothing typed by hand.
//
// A report file is the output of one command, preceded by header lines starting with "#":
//
//	# title: Image decode
//	# command: go test -run '^$' -bench DecodePNG512 -benchtime 20x ./internal/pipeline
//	# Free text lines become the section's prose (markdown; an empty "#" line starts a paragraph).
//	goos: linux
//	BenchmarkDecodePNG512/fast-2   20   30123456 ns/op   0.75 ms/image
//	...
//
// Go benchmark lines become one table per file (a row per benchmark, a column per unit, in order of
// appearance); goos/goarch/pkg/cpu lines give the machine line; every other line of output (the
// tables `hpa bench ...` prints, PASS/ok excepted) is kept verbatim in a code block.
package benchreport

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Section is one parsed report file.
type Section struct {
	File    string
	Title   string
	Command string
	Prose   []string // paragraphs
	Machine []string // "cpu: ...", "goos: linux", ...
	Benches []Bench
	Units   []string // the units of Benches, in order of first appearance
	Text    []string // other output lines, verbatim
}

// Bench is one Go benchmark result line.
type Bench struct {
	Name      string
	N         int64
	Metrics   map[string]float64
	unitOrder []string
}

// FormatError is a report file that cannot be used.
type FormatError struct {
	File   string
	Line   int
	Reason string
}

func (e *FormatError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("benchreport: %s:%d: %s", e.File, e.Line, e.Reason)
	}
	return fmt.Sprintf("benchreport: %s: %s", e.File, e.Reason)
}

// Parse reads one report file's content; name is used in errors and as the section's file.
func Parse(name string, r io.Reader) (Section, error) {
	s := Section{File: name}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	header := true
	var para []string
	flush := func() {
		if len(para) > 0 {
			s.Prose = append(s.Prose, strings.Join(para, "\n"))
			para = nil
		}
	}
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimRight(sc.Text(), " \t\r")
		if header && strings.HasPrefix(l, "#") {
			body := strings.TrimPrefix(strings.TrimPrefix(l, "#"), " ")
			switch {
			case strings.HasPrefix(body, "title:"):
				s.Title = strings.TrimSpace(strings.TrimPrefix(body, "title:"))
			case strings.HasPrefix(body, "command:"):
				s.Command = strings.TrimSpace(strings.TrimPrefix(body, "command:"))
			case strings.TrimSpace(body) == "":
				flush()
			default:
				para = append(para, body)
			}
			continue
		}
		if header {
			header = false
			flush()
		}
		if b, ok, err := parseBench(l); err != nil {
			return s, &FormatError{File: name, Line: line, Reason: err.Error()}
		} else if ok {
			s.Benches = append(s.Benches, b)
			continue
		}
		switch {
		case l == "PASS", strings.HasPrefix(l, "ok  \t"), strings.HasPrefix(l, "ok "):
		case strings.HasPrefix(l, "goos: "), strings.HasPrefix(l, "goarch: "), strings.HasPrefix(l, "cpu: "):
			s.Machine = append(s.Machine, l)
		case strings.HasPrefix(l, "pkg: "):
		default:
			s.Text = append(s.Text, l)
		}
	}
	if err := sc.Err(); err != nil {
		return s, &FormatError{File: name, Reason: err.Error()}
	}
	flush()
	// Drop blank lines around the verbatim output.
	for len(s.Text) > 0 && s.Text[0] == "" {
		s.Text = s.Text[1:]
	}
	for len(s.Text) > 0 && s.Text[len(s.Text)-1] == "" {
		s.Text = s.Text[:len(s.Text)-1]
	}
	if s.Title == "" {
		return s, &FormatError{File: name, Reason: "no \"# title:\" line"}
	}
	if s.Command == "" {
		return s, &FormatError{File: name, Reason: "no \"# command:\" line (the command whose output this is)"}
	}
	if len(s.Benches) == 0 && len(s.Text) == 0 {
		return s, &FormatError{File: name, Reason: "no output below the header"}
	}
	for _, b := range s.Benches {
		for _, u := range b.order() {
			if !contains(s.Units, u) {
				s.Units = append(s.Units, u)
			}
		}
	}
	return s, nil
}

// parseBench parses "BenchmarkX-2  20  123 ns/op  4.5 unit ...". ok is false for other lines.
func parseBench(l string) (Bench, bool, error) {
	f := strings.Fields(l)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
		return Bench{}, false, nil
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return Bench{}, false, nil
	}
	b := Bench{Name: f[0], N: n, Metrics: map[string]float64{}}
	var order []string
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Bench{}, false, fmt.Errorf("benchmark %s: value %q of %s is not a number", f[0], f[i], f[i+1])
		}
		b.Metrics[f[i+1]] = v
		order = append(order, f[i+1])
	}
	b.unitOrder = order
	return b, true, nil
}

func (b Bench) order() []string { return b.unitOrder }

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// ParseDir parses every *.txt of dir, in name order.
func ParseDir(dir string) ([]Section, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, &FormatError{File: dir, Reason: "no *.txt benchmark outputs"}
	}
	sort.Strings(names)
	var out []Section
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			return nil, err
		}
		s, err := Parse(filepath.ToSlash(n), f)
		f.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Render writes the markdown document of sections; srcDir is named in its header.
func Render(sections []Section, srcDir string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Benchmarks\n\n<!-- Generated by `make bench-report` from %s/*.txt; do not edit. -->\n\n", srcDir)
	fmt.Fprintf(&b, "Generated by `make bench-report` from the saved outputs of the benchmark commands in `%s/`\n", srcDir)
	b.WriteString("(one file per section). To update a section, rerun its command, save the output over its file\n")
	b.WriteString("(keeping the `#` header) and run `make bench-report`; `go test ./internal/benchreport` fails\n")
	b.WriteString("while this file and the outputs disagree. Figures typed by hand before the generator existed\n")
	fmt.Fprintf(&b, "(not re-measured since) are kept in [%s/history.md](%s/history.md).\n", strings.TrimPrefix(srcDir, "docs/"), strings.TrimPrefix(srcDir, "docs/"))
	for _, s := range sections {
		fmt.Fprintf(&b, "\n## %s\n\n", s.Title)
		fmt.Fprintf(&b, "Command: `%s` (output: `%s`)\n", s.Command, s.File)
		if len(s.Machine) > 0 {
			fmt.Fprintf(&b, "\nMachine: %s\n", strings.Join(s.Machine, ", "))
		}
		for _, p := range s.Prose {
			fmt.Fprintf(&b, "\n%s\n", p)
		}
		if len(s.Benches) > 0 {
			b.WriteString("\n| benchmark | runs |")
			for _, u := range s.Units {
				fmt.Fprintf(&b, " %s |", u)
			}
			b.WriteString("\n|---|---:|")
			for range s.Units {
				b.WriteString("---:|")
			}
			b.WriteString("\n")
			for _, r := range s.Benches {
				fmt.Fprintf(&b, "| `%s` | %d |", r.Name, r.N)
				for _, u := range s.Units {
					if v, ok := r.Metrics[u]; ok {
						fmt.Fprintf(&b, " %s |", formatValue(v))
					} else {
						b.WriteString(" |")
					}
				}
				b.WriteString("\n")
			}
		}
		if len(s.Text) > 0 {
			b.WriteString("\n```\n")
			for _, l := range s.Text {
				b.WriteString(l + "\n")
			}
			b.WriteString("```\n")
		}
	}
	return b.Bytes()
}

// formatValue prints a metric with up to 4 significant digits after the point, as Go prints them.
func formatValue(v float64) string {
	switch {
	case v == float64(int64(v)) && (v >= 100 || v <= -100):
		return strconv.FormatInt(int64(v), 10)
	case v >= 100 || v <= -100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}
