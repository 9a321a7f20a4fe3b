package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// run runs a command in the repository root with extra environment variables; it returns the
// combined output and the exit code.
func run(t *testing.T, env []string, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out), 0
}

// scripts/setup.sh is one script in parts: `make demo` installs only decode + ort; the test group
// is every part but the Kubernetes control plane; unknown parts are refused.
func TestSetupParts(t *testing.T) {
	out, code := run(t, nil, "bash", "scripts/setup.sh", "--list")
	if code != 0 {
		t.Fatalf("--list: exit %d\n%s", code, out)
	}
	groups := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		groups[k] = " " + v + " "
	}
	if groups["demo"] != " decode ort " {
		t.Errorf("demo group %q, want decode ort only (no libtorch, MinIO, PyTorch)", groups["demo"])
	}
	for _, p := range []string{"decode", "ort", "torch", "pytorch", "minio", "goaws", "clients", "browser", "helm"} {
		if !strings.Contains(groups["test"], " "+p+" ") {
			t.Errorf("test group %q lacks %s", groups["test"], p)
		}
	}
	if strings.Contains(groups["test"], " k8s ") || !strings.Contains(groups["all"], " k8s ") {
		t.Errorf("k8s belongs to all only: test %q all %q", groups["test"], groups["all"])
	}
	if out, code := run(t, nil, "bash", "scripts/setup.sh", "--only", "decode,bogus"); code != 2 || !strings.Contains(out, "unknown part bogus") {
		t.Errorf("an unknown part: exit %d\n%s", code, out)
	}
	// Every part a group names is run, none twice: a part left out of the run loop once shipped a
	// test group without goaws (CI failed on the bridge tests).
	for _, g := range []string{"demo", "test", "all"} {
		out, code := run(t, nil, "bash", "scripts/setup.sh", "--only", g, "--dry-run")
		if code != 0 {
			t.Fatalf("--only %s --dry-run: exit %d\n%s", g, code, out)
		}
		ran := map[string]int{}
		for _, l := range strings.Split(out, "\n") {
			if p, ok := strings.CutPrefix(l, "setup: would run: "); ok {
				ran[p]++
			}
		}
		for _, p := range strings.Fields(groups[g]) {
			if ran[p] != 1 {
				t.Errorf("group %s: part %s runs %d times (dry run)\n%s", g, p, ran[p], out)
			}
		}
		if len(ran) != len(strings.Fields(groups[g])) {
			t.Errorf("group %s: dry run ran %v, group is %q", g, ran, groups[g])
		}
	}
	// make demo asks for the demo group only; make test for the test group.
	out, code = run(t, nil, "make", "-n", "demo")
	if code != 0 || !strings.Contains(out, "scripts/setup.sh --only demo") || strings.Contains(out, "scripts/setup.sh\n") {
		t.Errorf("make -n demo (exit %d):\n%s", code, out)
	}
}

// Under CI nothing may skip: setup.sh and .ci/run refuse the HPA_SKIP_* variables before doing
// anything else.
func TestCIRefusesSkips(t *testing.T) {
	out, code := run(t, []string{"CI=true", "HPA_SKIP_MINIO=1"}, "bash", "scripts/setup.sh", "--only", "demo")
	if code == 0 || !strings.Contains(out, "HPA_SKIP_MINIO=1 is refused under CI") {
		t.Errorf("setup.sh under CI with HPA_SKIP_MINIO=1: exit %d\n%s", code, out)
	}
	out, code = run(t, []string{"HPA_SKIP_CHROMIUM=1"}, "bash", ".ci/run")
	if code != 1 || !strings.Contains(out, "HPA_SKIP_CHROMIUM is set") {
		t.Errorf(".ci/run with HPA_SKIP_CHROMIUM=1: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(filepath.Join(RepoRoot(t), ".ci", "run"))
	if err != nil || !strings.Contains(string(b), "export CI=true") {
		t.Errorf(".ci/run does not set CI=true (%v)", err)
	}
}

// bin/hpa links no libtorch: the training shim is dlopen'ed at run time, so `make demo` builds it
// without the torch part. No package cmd/hpa depends on names libtorch or c10 in its cgo flags.
func TestHPABuildNeedsNoLibtorch(t *testing.T) {
	out, code := run(t, nil, "go", "list", "-deps", "-f", "{{.ImportPath}} {{.CgoLDFLAGS}} {{.CgoCFLAGS}} {{.CgoCXXFLAGS}}", "./cmd/hpa")
	if code != 0 {
		t.Fatalf("go list: exit %d\n%s", code, out)
	}
	for _, l := range strings.Split(out, "\n") {
		_, flags, _ := strings.Cut(l, " ")
		if strings.Contains(flags, "-ltorch") || strings.Contains(flags, "-lc10") || strings.Contains(flags, "libtorch") {
			t.Errorf("links libtorch at build time: %s", l)
		}
	}
	if !strings.Contains(out, "github.com/hpa-plates/hpa/internal/model/torch ") {
		t.Errorf("go list output lacks the torch package; the check would prove nothing:\n%.400s", out)
	}
}
