package k8s

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Paths of the repository, found from this file (the test runs with test/k8s as working directory).
var (
	repoRoot = func() string {
		_, f, _, _ := runtime.Caller(0)
		return filepath.Clean(filepath.Join(filepath.Dir(f), "..", ".."))
	}()
	chartSrc = filepath.Join(repoRoot, "charts", "hpa")
	// The official NATS chart, packaged in ../shared for offline tests (never committed).
	natsChartTgz = filepath.Join(repoRoot, "..", "shared", "charts", "nats-2.14.2.tgz")
)

const (
	release   = "hpa-test"
	namespace = "plates"
	// kubeVersion is what `helm template` assumes (the install test's server is v1.37.2).
	kubeVersion = "v1.37.2"
)

// needTool skips the test with a one-line notice when a tool or file of the environment is missing,
// or fails it when env CI is set (CI installs everything: scripts/setup.sh).
func needTool(t testing.TB, what, hint string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (under CI nothing may skip): %s", what, hint)
	}
	t.Skipf("skipped: %s is missing (%s)", what, hint)
}

// helmBin is the helm CLI built by scripts/setup.sh (HPA_HELM_BIN overrides).
func helmBin(t testing.TB) string {
	t.Helper()
	p := os.Getenv("HPA_HELM_BIN")
	if p == "" {
		p = filepath.Join(repoRoot, ".cache", "bin", "helm")
	}
	if _, err := os.Stat(p); err != nil {
		needTool(t, "helm ("+p+")", "run scripts/setup.sh, which builds it from helm.sh/helm/v3")
	}
	return p
}

// natsTgz returns the packaged NATS chart, or skips (fails under CI) without ../shared.
func natsTgz(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(natsChartTgz); err != nil {
		needTool(t, "the packaged NATS chart "+natsChartTgz, "../shared/charts; users get it with `helm dependency build charts/hpa`")
	}
	return natsChartTgz
}

var (
	chartOnce   sync.Map // variant -> *chartCopy
	chartTmpDir string
)

type chartCopy struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "hpa-chart-test-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	chartTmpDir = d
	code := m.Run()
	_ = os.RemoveAll(d)
	os.Exit(code)
}

// chartDir returns a copy of charts/hpa ready to render. withNATS: the NATS chart in its charts/
// folder, as `helm dependency build` leaves it (needs ../shared). Without: the dependency is
// dropped from Chart.yaml, because helm refuses a chart whose declared dependency is missing even
// when its condition is false; everything the hpa chart itself renders is the same (nats.enabled
// still picks the bundled service names).
func chartDir(t testing.TB, withNATS bool) string {
	t.Helper()
	variant := "without-nats"
	if withNATS {
		variant = "with-nats"
		natsTgz(t)
	}
	v, _ := chartOnce.LoadOrStore(variant, &chartCopy{})
	c := v.(*chartCopy)
	c.once.Do(func() {
		dst := filepath.Join(chartTmpDir, variant, "hpa")
		if c.err = copyTree(chartSrc, dst); c.err != nil {
			return
		}
		_ = os.RemoveAll(filepath.Join(dst, "charts"))
		if withNATS {
			if c.err = os.MkdirAll(filepath.Join(dst, "charts"), 0o755); c.err == nil {
				c.err = copyFile(natsChartTgz, filepath.Join(dst, "charts", filepath.Base(natsChartTgz)))
			}
		} else {
			c.err = dropDependencies(filepath.Join(dst, "Chart.yaml"))
		}
		c.dir = dst
	})
	if c.err != nil {
		t.Fatal(c.err)
	}
	return c.dir
}

func dropDependencies(chartYAML string) error {
	b, err := os.ReadFile(chartYAML)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return err
	}
	if _, ok := m["dependencies"]; !ok {
		return errors.New("Chart.yaml declares no dependencies: the NATS dependency is gone")
	}
	delete(m, "dependencies")
	out, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(chartYAML, out, 0o644)
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		return copyFile(p, target)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// helm runs the helm CLI with a private home (no repositories, no cache outside the test).
func helm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	home := filepath.Join(chartTmpDir, "helm-home")
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config",
		"HELM_DATA_HOME="+home+"/data")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// valuesFile writes values as a YAML file for -f.
func valuesFile(t testing.TB, values map[string]any) string {
	t.Helper()
	b, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(chartTmpDir, "values-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return f.Name()
}

// render runs helm template with values and returns the manifest.
func render(t testing.TB, chart string, values map[string]any, extra ...string) (string, error) {
	t.Helper()
	args := append([]string{"template", release, chart, "--namespace", namespace, "--kube-version", kubeVersion,
		"--api-versions", "keda.sh/v1alpha1", "--api-versions", "monitoring.coreos.com/v1", "-f", valuesFile(t, values)}, extra...)
	return helm(t, args...)
}

// lint runs helm lint --strict with values.
func lint(t testing.TB, chart string, values map[string]any) (string, error) {
	t.Helper()
	return helm(t, "lint", "--strict", chart, "--namespace", namespace, "--kube-version", kubeVersion, "-f", valuesFile(t, values))
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// splitDocs splits a manifest into its non-empty YAML documents with their "# Source:" lines.
func splitDocs(manifest string) []doc {
	var out []doc
	for _, d := range docSep.Split(manifest, -1) {
		src := ""
		body := []string{}
		for _, l := range strings.Split(d, "\n") {
			if strings.HasPrefix(l, "# Source: ") {
				src = strings.TrimPrefix(l, "# Source: ")
				continue
			}
			body = append(body, l)
		}
		text := strings.TrimSpace(strings.Join(body, "\n"))
		if text == "" || strings.Trim(text, "# \n") == "" {
			continue
		}
		out = append(out, doc{source: src, text: text})
	}
	return out
}

type doc struct {
	source string
	text   string
}
