package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/testenv"
	"github.com/hpa-plates/hpa/internal/testenv/servers"
)

// imageLayout maps the paths the chart's pods see (the image of deploy/Dockerfile and the volumes
// the chart mounts) to this checkout. It is the only thing the test changes in what the chart
// renders; test/k8s TestDockerfile checks the image has these paths.
func imageLayout(t *testing.T, root, configDir, cacheDir string) *strings.Replacer {
	ort := filepath.Join(root, ".cache", "libonnxruntime.so")
	if _, err := os.Stat(ort); err != nil {
		testenv.NeedTool(t, ort, "scripts/setup.sh --only ort")
	}
	return strings.NewReplacer(
		"/opt/hpa/lib/libonnxruntime.so", ort,
		"/opt/hpa/models/bundled", filepath.Join(root, "models", "bundled"),
		"/etc/hpa", configDir,
		"/var/cache/hpa", cacheDir,
	)
}

// renderedContainer is the part of a rendered Deployment this test runs.
type renderedContainer struct {
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		ContainerPort int `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
		} `yaml:"httpGet"`
	} `yaml:"readinessProbe"`
}

type renderedObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Template struct {
			Spec struct {
				TerminationGracePeriodSeconds int                 `yaml:"terminationGracePeriodSeconds"`
				Containers                    []renderedContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// renderChart renders charts/hpa with values using the helm CLI that scripts/setup.sh builds.
// The NATS dependency is dropped from a copy of the chart (helm refuses a declared dependency that
// is missing, even when disabled; this test uses an external NATS).
func renderChart(t *testing.T, root string, values map[string]any) []renderedObject {
	t.Helper()
	helmBin := filepath.Join(root, ".cache", "bin", "helm")
	if _, err := os.Stat(helmBin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing (under CI nothing may skip): scripts/setup.sh builds it", helmBin)
		}
		t.Skipf("skipped: %s missing (scripts/setup.sh builds it)", helmBin)
	}
	src := filepath.Join(root, "charts", "hpa")
	chart := filepath.Join(t.TempDir(), "hpa")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(chart, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(chart, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(filepath.Join(chart, "charts"))
	var meta map[string]any
	b, _ := os.ReadFile(filepath.Join(chart, "Chart.yaml"))
	if err := yaml.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	delete(meta, "dependencies")
	b, _ = yaml.Marshal(meta)
	if err := os.WriteFile(filepath.Join(chart, "Chart.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	vb, _ := yaml.Marshal(values)
	vf := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(vf, vb, 0o644); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	cmd := exec.Command(helmBin, "template", "hpa-test", chart, "--namespace", "plates", "--kube-version", "v1.37.2", "-f", vf)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	var objs []renderedObject
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o renderedObject
		if err := dec.Decode(&o); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("rendered manifest: %v", err)
		}
		if o.Kind != "" {
			objs = append(objs, o)
		}
	}
	return objs
}

// renderedRole finds the Deployment of component in the rendered objects, writes the ConfigMap's
// config.yaml where the pod mounts it (configDir stands for /etc/hpa), and returns the Deployment
// and its one container.
func renderedRole(t *testing.T, objs []renderedObject, component, configDir string, layout *strings.Replacer) (*renderedObject, renderedContainer) {
	t.Helper()
	var dep *renderedObject
	for i, o := range objs {
		switch {
		case o.Kind == "ConfigMap" && o.Metadata.Name == "hpa-test-config":
			if err := os.WriteFile(filepath.Join(configDir, "config.yaml"), []byte(layout.Replace(o.Data["config.yaml"])), 0o644); err != nil {
				t.Fatal(err)
			}
		case o.Kind == "Deployment" && o.Metadata.Name == "hpa-test-"+component:
			dep = &objs[i]
		}
	}
	if dep == nil || len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("no single-container %s Deployment rendered", component)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if len(c.Command) != 1 || c.Command[0] != "hpa" {
		t.Fatalf("command %q: the image's hpa expected", c.Command)
	}
	return dep, c
}

// runContainer starts the container's command line and environment as they are rendered (paths
// mapped by layout, secretKeyRefs resolved from secrets): this test binary plays the image's hpa.
func runContainer(t *testing.T, c renderedContainer, layout *strings.Replacer, secrets map[string]map[string]string, home string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = layout.Replace(a)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
	for _, e := range c.Env {
		v := layout.Replace(e.Value)
		if e.ValueFrom != nil {
			if e.ValueFrom.SecretKeyRef == nil {
				t.Fatalf("env %s: only secretKeyRef is resolved here", e.Name)
			}
			s, ok := secrets[e.ValueFrom.SecretKeyRef.Name][e.ValueFrom.SecretKeyRef.Key]
			if !ok {
				t.Fatalf("env %s: Secret %s key %s does not exist", e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			}
			v = s
		}
		env = append(env, e.Name+"="+v)
	}
	t.Logf("hpa %s", strings.Join(args, " "))
	b, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessHPA$")
	cmd.Env = append(env, "HPA_HELPER_ARGS="+string(b))
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, out
}

// waitReady waits until the container's readiness probe (on its one port, which must be port)
// answers 200, and returns the deadline of the test's further waits.
func waitReady(t *testing.T, cmd *exec.Cmd, out *syncBuffer, c renderedContainer, port int) time.Time {
	t.Helper()
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != port {
		t.Fatalf("ports %+v, want the one port %d", c.Ports, port)
	}
	readyURL := fmt.Sprintf("http://127.0.0.1:%d%s", port, c.ReadinessProbe.HTTPGet.Path)
	deadline := time.Now().Add(90 * time.Second)
	for {
		r, err := http.Get(readyURL)
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return deadline
			}
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("the rendered container never became ready at %s:\n%s", readyURL, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopsWithinGrace sends SIGTERM (after the preStop pause in the cluster) and expects exit 0
// within the rendered grace period.
func stopsWithinGrace(t *testing.T, cmd *exec.Cmd, out *syncBuffer, dep *renderedObject) {
	t.Helper()
	grace := time.Duration(dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
		}
		t.Logf("exited %v after SIGTERM (grace period %v)", time.Since(start).Round(time.Millisecond), grace)
	case <-time.After(grace):
		t.Fatalf("still running %v after SIGTERM:\n%s", grace, out.String())
	}
}

// The inference container the chart renders, run as it is: its command line and environment
// (secrets resolved from a stand-in for the Secret), the ConfigMap as /etc/hpa/config.yaml, the
// cache volume as TMPDIR. It starts the real `hpa inference` (this test binary in the role of the
// image's hpa) against the embedded test NATS and the in-process S3 server, downloads its model set
// from S3 as models.location says, reports ready on the probe's port and path, labels an uploaded
// sample, and drains on SIGTERM well within the rendered grace period.
func TestChartInferenceContainerRuns(t *testing.T) {
	root := testenv.RepoRoot(t)
	dir := t.TempDir()
	configDir, cacheDir := filepath.Join(dir, "etc-hpa"), filepath.Join(dir, "cache")
	for _, d := range []string{configDir, cacheDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	layout := imageLayout(t, root, configDir, cacheDir)

	ns, _, js := servers.JetStream(t, filepath.Join(dir, "nats"))
	ctx := context.Background()
	if _, err := bus.EnsureEventsStream(ctx, js, bus.EventsStreamConfig{Name: "S3_EVENTS", Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	const ak, sk = "AKIACHARTTEST", "chart-test-secret"
	srv := servers.S3(t, s3local.Options{Dir: filepath.Join(dir, "s3"), AccessKey: ak, SecretKey: sk, Buckets: []string{"plates"},
		Publisher: bus.JetStreamPublisher{JS: js}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	store, err := objstore.Open(ctx, objstore.Config{Endpoint: srv.Endpoint(), Region: "us-east-1", PathStyle: true,
		Bucket: "plates", AccessKey: ak, SecretKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	// The model set, in S3 where the chart's models.location points.
	manifest := labelModelSet(t)
	files, _ := os.ReadDir(filepath.Dir(manifest))
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(manifest), f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Put(ctx, "models/test/"+f.Name(), b, "application/octet-stream"); err != nil {
			t.Fatal(err)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	objs := renderChart(t, root, map[string]any{
		"nats":          map[string]any{"enabled": false},
		"keda":          map[string]any{"enabled": false},
		"training":      map[string]any{"enabled": false},
		"inference":     map[string]any{"gpu": map[string]any{"enabled": false}},
		"metrics":       map[string]any{"port": port},
		"models":        map[string]any{"location": "s3://plates/models/test/"},
		"s3Credentials": map[string]any{"existingSecret": "s3-keys"},
		"config": map[string]any{
			"nats":      map[string]any{"url": ns.ClientURL()},
			"s3":        map[string]any{"endpoint": srv.Endpoint(), "path_style": true, "bucket": "plates"},
			"inference": map[string]any{"batch": 4, "ack_wait": "5s"},
		},
	})
	secrets := map[string]map[string]string{"s3-keys": {"access-key": ak, "secret-key": sk}}
	dep, c := renderedRole(t, objs, "inference", configDir, layout)
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Fatalf("readiness %+v", c.ReadinessProbe)
	}
	cmd, out := runContainer(t, c, layout, secrets, dir)
	deadline := waitReady(t, cmd, out, c, port)
	for ch, name := range pipeline.ChannelNames {
		if err := store.Put(ctx, fmt.Sprintf("incoming/p1/s1_%s.png", name), upPNG(96, uint64(50+ch)), "image/png"); err != nil {
			t.Fatal(err)
		}
	}
	for {
		if b, err := store.Get(ctx, "labels/p1/s1.json", 0); err == nil {
			if _, err := labels.ParseLabel(b); err != nil {
				t.Fatalf("label: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no label for the uploaded sample:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// SIGTERM: drains and exits 0 within the grace period.
	stopsWithinGrace(t, cmd, out, dep)
}

// The viewer container the chart renders (web.enabled), run as it is: `hpa web` with the chart's
// config and environment listens on the container port, answers its readiness probe, keeps the
// pages behind the S3 keys or the token of web.auth (from their Secrets), shows an uploaded plate,
// and stops on SIGTERM within the grace period.
func TestChartWebContainerRuns(t *testing.T) {
	root := testenv.RepoRoot(t)
	dir := t.TempDir()
	configDir, cacheDir := filepath.Join(dir, "etc-hpa"), filepath.Join(dir, "cache")
	for _, d := range []string{configDir, cacheDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	layout := imageLayout(t, root, configDir, cacheDir)
	ns, _, js := servers.JetStream(t, filepath.Join(dir, "nats"))
	ctx := context.Background()
	if _, err := bus.EnsureEventsStream(ctx, js, bus.EventsStreamConfig{Name: "S3_EVENTS", Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	const ak, sk, token = "AKIACHARTWEB", "chart-web-secret", "chart-web-token"
	srv := servers.S3(t, s3local.Options{Dir: filepath.Join(dir, "s3"), AccessKey: ak, SecretKey: sk, Buckets: []string{"plates"},
		Publisher: bus.JetStreamPublisher{JS: js}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	store, err := objstore.Open(ctx, objstore.Config{Endpoint: srv.Endpoint(), Region: "us-east-1", PathStyle: true,
		Bucket: "plates", AccessKey: ak, SecretKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	for ch, name := range pipeline.ChannelNames {
		if err := store.Put(ctx, fmt.Sprintf("incoming/plate-w/w1_%s.png", name), upPNG(64, uint64(70+ch)), "image/png"); err != nil {
			t.Fatal(err)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	objs := renderChart(t, root, map[string]any{
		"nats":          map[string]any{"enabled": false},
		"keda":          map[string]any{"enabled": false},
		"training":      map[string]any{"enabled": false},
		"inference":     map[string]any{"gpu": map[string]any{"enabled": false}},
		"web":           map[string]any{"enabled": true, "auth": map[string]any{"existingSecret": "web-auth"}},
		"metrics":       map[string]any{"port": port},
		"s3Credentials": map[string]any{"existingSecret": "s3-keys"},
		"config": map[string]any{
			"nats": map[string]any{"url": ns.ClientURL()},
			"s3":   map[string]any{"endpoint": srv.Endpoint(), "path_style": true, "bucket": "plates"},
		},
	})
	secrets := map[string]map[string]string{"s3-keys": {"access-key": ak, "secret-key": sk}, "web-auth": {"token": token}}
	dep, c := renderedRole(t, objs, "web", configDir, layout)
	cmd, out := runContainer(t, c, layout, secrets, dir)
	waitReady(t, cmd, out, c, port)

	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if code, _ := httpGet(t, base, "", ""); code != http.StatusUnauthorized {
		t.Errorf("viewer without credentials: %d, want 401", code)
	}
	if code, _ := httpGet(t, base, "someone", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("viewer with a wrong password: %d, want 401", code)
	}
	for _, cred := range [][2]string{{ak, sk}, {"anyone", token}} {
		code, body := httpGet(t, base, cred[0], cred[1])
		if code != 200 || !strings.Contains(body, "plate-w") {
			t.Errorf("viewer signed in as %s: %d, plate-w listed %v\n%.300s", cred[0], code, strings.Contains(body, "plate-w"), body)
		}
	}
	stopsWithinGrace(t, cmd, out, dep)
}
