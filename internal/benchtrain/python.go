package benchtrain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hpa-plates/hpa/internal/model"
)

// DefaultPython is Debian's interpreter, the one python3-torch installs torch for (a python3 found
// first on PATH, e.g. pyenv's, usually lacks it).
const DefaultPython = "/usr/bin/python3"

// DefaultScript is the PyTorch baseline, relative to the repository root.
const DefaultScript = "scripts/bench_train_step.py"

// TCMallocCandidates are where Debian-like systems keep tcmalloc-minimal (FindTCMalloc).
var TCMallocCandidates = []string{
	"/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
	"/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
	"/usr/lib64/libtcmalloc_minimal.so.4",
	"/usr/lib/libtcmalloc_minimal.so.4",
}

// FindTCMalloc returns the first existing TCMallocCandidates entry.
func FindTCMalloc() (string, error) {
	for _, p := range TCMallocCandidates {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", &PythonError{Kind: "no_tcmalloc", Reason: "libtcmalloc_minimal.so.4 not found in " +
		strings.Join(TCMallocCandidates, ", ") + " (install libtcmalloc-minimal4, or pass the path)"}
}

// PyOptions run the PyTorch baseline once.
type PyOptions struct {
	StepOptions
	Threads   int    // torch intra-op threads
	Python    string // interpreter (DefaultPython when empty)
	Script    string // bench_train_step.py
	Preload   string // LD_PRELOAD for the child (the allocator); empty = none
	NoInplace bool   // out-of-place ReLUs in the Python model (timm's are in-place)
}

// PyResult is what the script reports.
type PyResult struct {
	TorchVersion string
	Python       string
	Threads      int
	TCMalloc     bool // libtcmalloc mapped in the child (/proc/self/maps)
	InplaceReLU  bool
	Params       int
	Tensors      []model.TensorSpec // state dict names and shapes (Kind not set)
	Steps
}

// PythonError is a failed PyTorch baseline run. Kind is one of no_tcmalloc, no_script, no_python,
// no_torch (the interpreter cannot import torch), failed (other non-zero exit), bad_output.
type PythonError struct {
	Python, Script string
	Kind           string
	Reason         string
}

func (e *PythonError) Error() string {
	var where []string
	if e.Python != "" {
		where = append(where, e.Python)
	}
	if e.Script != "" {
		where = append(where, e.Script)
	}
	w := ""
	if len(where) > 0 {
		w = " (" + strings.Join(where, " ") + ")"
	}
	return "bench train: python baseline" + w + ": " + e.Reason
}

// pyOutput is the script's JSON.
type pyOutput struct {
	TorchVersion string    `json:"torch_version"`
	Python       string    `json:"python"`
	Threads      int       `json:"threads"`
	TCMalloc     bool      `json:"tcmalloc"`
	InplaceReLU  bool      `json:"inplace_relu"`
	Params       int       `json:"params"`
	Tensors      [][2]any  `json:"tensors"`
	Wall         []float64 `json:"wall_s"`
	CPU          []float64 `json:"cpu_s"`
	Loss         []float64 `json:"loss"`
}

// PythonSteps runs the script once in a child process and parses its report. The child gets this
// process's environment plus LD_PRELOAD=o.Preload when set; a child that was asked to preload
// tcmalloc but does not have it mapped is an error (the comparison would not be like for like).
func PythonSteps(ctx context.Context, o PyOptions) (PyResult, error) {
	if err := o.Validate(); err != nil {
		return PyResult{}, err
	}
	if o.Threads < 1 {
		return PyResult{}, &OptionsError{Reason: fmt.Sprintf("threads must be >= 1, got %d", o.Threads)}
	}
	py := o.Python
	if py == "" {
		py = DefaultPython
	}
	perr := func(kind, format string, args ...any) error {
		return &PythonError{Python: py, Script: o.Script, Kind: kind, Reason: fmt.Sprintf(format, args...)}
	}
	if st, err := os.Stat(o.Script); err != nil || st.IsDir() {
		return PyResult{}, perr("no_script", "script not found (run from the repository root or pass --script)")
	}
	if _, err := exec.LookPath(py); err != nil {
		return PyResult{}, perr("no_python", "interpreter not found: %v (Debian: apt-get install python3-torch)", err)
	}
	dir, err := os.MkdirTemp("", "hpa-bench-train-")
	if err != nil {
		return PyResult{}, err
	}
	defer os.RemoveAll(dir)
	specFile := filepath.Join(dir, "spec.json")
	js, err := json.Marshal(o.Spec)
	if err != nil {
		return PyResult{}, err
	}
	if err := os.WriteFile(specFile, js, 0o644); err != nil {
		return PyResult{}, err
	}
	args := []string{o.Script, "--spec", specFile,
		"--size", strconv.Itoa(o.Size), "--batch", strconv.Itoa(o.Batch),
		"--steps", strconv.Itoa(o.Steps), "--warmup", strconv.Itoa(o.Warmup),
		"--threads", strconv.Itoa(o.Threads), "--seed", strconv.FormatUint(o.Seed, 10),
		"--lr", strconv.FormatFloat(LR, 'g', -1, 64), "--momentum", strconv.FormatFloat(Momentum, 'g', -1, 64),
		"--weight-decay", strconv.FormatFloat(WeightDecay, 'g', -1, 64)}
	if o.NoInplace {
		args = append(args, "--no-inplace")
	}
	cmd := exec.CommandContext(ctx, py, args...)
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "LD_PRELOAD=") })
	if o.Preload != "" {
		env = append(env, "LD_PRELOAD="+o.Preload)
	}
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 3 {
			return PyResult{}, perr("no_torch", "%s", msg)
		}
		return PyResult{}, perr("failed", "%v: %s", err, msg)
	}
	r, err := parsePyOutput(stdout.Bytes(), o.Steps)
	if err != nil {
		return PyResult{}, perr("bad_output", "%v", err)
	}
	if o.Preload != "" && strings.Contains(o.Preload, "tcmalloc") && !r.TCMalloc {
		return PyResult{}, perr("failed", "LD_PRELOAD=%s but libtcmalloc is not mapped in the child", o.Preload)
	}
	return r, nil
}

// parsePyOutput reads the script's JSON object (the last non-empty line of stdout).
func parsePyOutput(out []byte, steps int) (PyResult, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if last == "" {
		return PyResult{}, errors.New("no output")
	}
	var p pyOutput
	if err := json.Unmarshal([]byte(last), &p); err != nil {
		if len(last) > 200 {
			last = last[:200] + "..."
		}
		return PyResult{}, fmt.Errorf("output is not the expected JSON (%v): %q", err, last)
	}
	if len(p.Wall) != steps || len(p.CPU) != steps || len(p.Loss) != steps {
		return PyResult{}, fmt.Errorf("want %d timed steps, got %d wall, %d cpu, %d loss values", steps, len(p.Wall), len(p.CPU), len(p.Loss))
	}
	r := PyResult{TorchVersion: p.TorchVersion, Python: p.Python, Threads: p.Threads, TCMalloc: p.TCMalloc,
		InplaceReLU: p.InplaceReLU, Params: p.Params}
	for i, t := range p.Tensors {
		name, ok := t[0].(string)
		shape, ok2 := t[1].([]any)
		if !ok || !ok2 {
			return PyResult{}, fmt.Errorf("tensor entry %d is not [name, shape]", i)
		}
		ts := model.TensorSpec{Name: name, Shape: make([]int, len(shape))}
		for j, d := range shape {
			f, ok := d.(float64)
			if !ok || f < 0 || f != float64(int(f)) {
				return PyResult{}, fmt.Errorf("tensor %s: bad dimension %v", name, d)
			}
			ts.Shape[j] = int(f)
		}
		r.Tensors = append(r.Tensors, ts)
	}
	for i := range steps {
		if !(p.Wall[i] >= 0) || !(p.CPU[i] >= 0) {
			return PyResult{}, fmt.Errorf("step %d: negative or NaN time", i+1)
		}
		r.Wall = append(r.Wall, secs(p.Wall[i]))
		r.CPU = append(r.CPU, secs(p.CPU[i]))
		r.Loss = append(r.Loss, p.Loss[i])
	}
	return r, nil
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// ArchMismatchError says the Python model is not the spec's architecture.
type ArchMismatchError struct {
	Arch    string
	Reasons []string
}

func (e *ArchMismatchError) Error() string {
	show := e.Reasons
	if len(show) > 10 {
		show = append(show[:10:10], fmt.Sprintf("... and %d more", len(e.Reasons)-10))
	}
	return fmt.Sprintf("bench train: the python model is not %s: %s", e.Arch, strings.Join(show, "; "))
}

// CheckArch compares the Python model's state dict (names, shapes, order) and parameter count with
// the spec's timm state dict (Spec.Tensors, Spec.ParamCount).
func CheckArch(spec model.Spec, r PyResult) error {
	var bad []string
	if r.Params != spec.ParamCount() {
		bad = append(bad, fmt.Sprintf("%d parameters, spec has %d", r.Params, spec.ParamCount()))
	}
	want := spec.Tensors()
	if len(r.Tensors) != len(want) {
		bad = append(bad, fmt.Sprintf("%d state-dict tensors, spec has %d", len(r.Tensors), len(want)))
	}
	for i := range min(len(want), len(r.Tensors)) {
		w, g := want[i], r.Tensors[i]
		if w.Name != g.Name {
			bad = append(bad, fmt.Sprintf("tensor %d is %s, spec has %s", i, g.Name, w.Name))
		} else if !slices.Equal(w.Shape, g.Shape) {
			bad = append(bad, fmt.Sprintf("%s has shape %v, spec has %v", w.Name, g.Shape, w.Shape))
		}
	}
	if len(bad) > 0 {
		return &ArchMismatchError{Arch: spec.Name, Reasons: bad}
	}
	return nil
}
