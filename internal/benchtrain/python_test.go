package benchtrain

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakePython writes an executable shell script standing in for the interpreter.
func fakePython(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "python")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// goodOutput is the JSON the script prints for spec with n steps.
func goodOutput(t *testing.T, n int, tcmalloc bool) string {
	t.Helper()
	s := preset(t, "seresnext_tiny")
	var tensors [][2]any
	for _, ts := range s.Tensors() {
		tensors = append(tensors, [2]any{ts.Name, ts.Shape})
	}
	times := make([]float64, n)
	for i := range times {
		times[i] = 0.01 * float64(i+1)
	}
	b, err := json.Marshal(map[string]any{"torch_version": "1.13", "python": "/x/python3", "threads": 1,
		"tcmalloc": tcmalloc, "inplace_relu": true, "params": s.ParamCount(), "tensors": tensors,
		"wall_s": times, "cpu_s": times, "loss": times})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func pyOpts(t *testing.T, python string) PyOptions {
	script := filepath.Join(t.TempDir(), "bench.py")
	if err := os.WriteFile(script, []byte("# stand-in"), 0o644); err != nil {
		t.Fatal(err)
	}
	return PyOptions{StepOptions: StepOptions{Spec: preset(t, "seresnext_tiny"), Size: 64, Batch: 2, Steps: 3, Warmup: 1, Seed: 1},
		Threads: 1, Python: python, Script: script}
}

func TestPythonStepsParsesTheReport(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.json")
	if err := os.WriteFile(out, []byte("some log line\n"+goodOutput(t, 3, true)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	argsFile := filepath.Join(t.TempDir(), "args")
	py := fakePython(t, `echo "$@" > `+argsFile+`; echo "LD_PRELOAD=$LD_PRELOAD" >> `+argsFile+`; cat `+out)
	o := pyOpts(t, py)
	o.Preload = "/some/libtcmalloc_minimal.so.4"
	r, err := PythonSteps(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Wall) != 3 || r.Wall[2].Milliseconds() != 30 || r.MedianCPU().Milliseconds() != 20 || !r.TCMalloc || r.Threads != 1 {
		t.Errorf("parsed %+v", r)
	}
	if err := CheckArch(o.Spec, r); err != nil {
		t.Errorf("the spec's own tensors: %v", err)
	}
	args, _ := os.ReadFile(argsFile)
	for _, want := range []string{"--size 64 --batch 2 --steps 3 --warmup 1 --threads 1 --seed 1", "--lr 0.1 --momentum 0.9 --weight-decay 0.0001",
		"LD_PRELOAD=/some/libtcmalloc_minimal.so.4"} {
		if !strings.Contains(string(args), want) {
			t.Errorf("child args/env lack %q:\n%s", want, args)
		}
	}
}

func TestPythonStepsErrors(t *testing.T) {
	cases := []struct {
		name, body, kind, want string
		preload                string
	}{
		{"no torch", `echo "bench_train_step.py: /usr/bin/python3 cannot import torch" >&2; exit 3`, "no_torch", "cannot import torch", ""},
		{"crash", `echo "Traceback: boom" >&2; exit 1`, "failed", "boom", ""},
		{"garbage", `echo "not json"`, "bad_output", "not the expected JSON", ""},
		{"empty", `true`, "bad_output", "no output", ""},
		{"too few steps", `echo '{"wall_s":[1],"cpu_s":[1],"loss":[1]}'`, "bad_output", "want 3 timed steps", ""},
		{"bad tensor", `echo '{"tensors":[[1,2]],"wall_s":[1,1,1],"cpu_s":[1,1,1],"loss":[1,1,1]}'`, "bad_output", "not [name, shape]", ""},
		{"negative time", `echo '{"wall_s":[1,-1,1],"cpu_s":[1,1,1],"loss":[1,1,1]}'`, "bad_output", "step 2", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := pyOpts(t, fakePython(t, c.body))
			o.Preload = c.preload
			_, err := PythonSteps(context.Background(), o)
			var pe *PythonError
			if !errors.As(err, &pe) || pe.Kind != c.kind || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), o.Python) {
				t.Fatalf("want a %s PythonError with %q naming the interpreter, got %v", c.kind, c.want, err)
			}
		})
	}
	t.Run("tcmalloc not mapped", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out.json")
		if err := os.WriteFile(out, []byte(goodOutput(t, 3, false)), 0o644); err != nil {
			t.Fatal(err)
		}
		o := pyOpts(t, fakePython(t, "cat "+out))
		o.Preload = "/x/libtcmalloc_minimal.so.4"
		_, err := PythonSteps(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "not mapped") {
			t.Fatalf("want a not-mapped error, got %v", err)
		}
	})
	t.Run("missing script", func(t *testing.T) {
		o := pyOpts(t, fakePython(t, "true"))
		o.Script = filepath.Join(t.TempDir(), "nope.py")
		_, err := PythonSteps(context.Background(), o)
		var pe *PythonError
		if !errors.As(err, &pe) || pe.Kind != "no_script" || !strings.Contains(err.Error(), "nope.py") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing interpreter", func(t *testing.T) {
		o := pyOpts(t, filepath.Join(t.TempDir(), "python9"))
		_, err := PythonSteps(context.Background(), o)
		var pe *PythonError
		if !errors.As(err, &pe) || pe.Kind != "no_python" || !strings.Contains(err.Error(), "python9") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad options", func(t *testing.T) {
		o := pyOpts(t, fakePython(t, "true"))
		o.Threads = 0
		var oe *OptionsError
		if _, err := PythonSteps(context.Background(), o); !errors.As(err, &oe) {
			t.Fatalf("threads 0: %v", err)
		}
		o.Threads, o.Steps = 1, 0
		if _, err := PythonSteps(context.Background(), o); !errors.As(err, &oe) {
			t.Fatalf("steps 0: %v", err)
		}
	})
}

func TestCheckArchFindsDifferences(t *testing.T) {
	s := preset(t, "seresnext_tiny")
	good := PyResult{Params: s.ParamCount()}
	for _, ts := range s.Tensors() {
		good.Tensors = append(good.Tensors, ts)
	}
	if err := CheckArch(s, good); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.Tensors = append(bad.Tensors[:0:0], good.Tensors...)
	bad.Tensors[3].Name = "bn1.running_avg"
	bad.Tensors[10].Shape = []int{1, 2, 3}
	bad.Params++
	err := CheckArch(s, bad)
	var am *ArchMismatchError
	if !errors.As(err, &am) || len(am.Reasons) != 3 {
		t.Fatalf("want 3 reasons, got %v", err)
	}
	for _, want := range []string{"bn1.running_avg", "[1 2 3]", "parameters"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	short := good
	short.Tensors = good.Tensors[:5]
	if err := CheckArch(s, short); err == nil || !strings.Contains(err.Error(), "state-dict tensors") {
		t.Errorf("truncated state dict: %v", err)
	}
}

func TestFindTCMalloc(t *testing.T) {
	old := TCMallocCandidates
	t.Cleanup(func() { TCMallocCandidates = old })
	dir := t.TempDir()
	lib := filepath.Join(dir, "libtcmalloc_minimal.so.4")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	TCMallocCandidates = []string{filepath.Join(dir, "missing.so"), dir, lib}
	if p, err := FindTCMalloc(); err != nil || p != lib {
		t.Fatalf("got %q, %v", p, err)
	}
	TCMallocCandidates = []string{filepath.Join(dir, "missing.so")}
	var pe *PythonError
	if _, err := FindTCMalloc(); !errors.As(err, &pe) || pe.Kind != "no_tcmalloc" || !strings.Contains(err.Error(), "libtcmalloc-minimal4") {
		t.Fatalf("got %v", err)
	}
}
