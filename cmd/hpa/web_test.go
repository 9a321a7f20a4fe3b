package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/local/natsembed"
	"github.com/hpa-plates/hpa/internal/local/s3local"
)

func httpGet(t *testing.T, url, user, pass string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// `hpa up` serves the viewer on its metrics listener (metrics and probes stay open, the viewer
// needs the S3 keys), and `hpa web --endpoints` serves it against the same S3 + NATS.
func TestWebServesViewer(t *testing.T) {
	manifest := labelModelSet(t)
	dataDir := t.TempDir()
	r := startUp(t, dataDir, manifest)
	r.upload(t, "plate W", "w1", 1)
	r.waitLabel(t, "plate W", "w1")

	if !strings.HasSuffix(r.ep.ViewerURL, "/") || !strings.HasPrefix(r.ep.MetricsURL, strings.TrimSuffix(r.ep.ViewerURL, "/")) {
		t.Fatalf("viewer_url %q, metrics_url %q", r.ep.ViewerURL, r.ep.MetricsURL)
	}
	if code, _ := httpGet(t, r.ep.MetricsURL, "", ""); code != 200 {
		t.Errorf("/metrics without credentials: %d", code)
	}
	if code, _ := httpGet(t, r.ep.ViewerURL+"healthz", "", ""); code != 200 {
		t.Errorf("/healthz without credentials: %d", code)
	}
	if code, _ := httpGet(t, r.ep.ViewerURL, "", ""); code != 401 {
		t.Errorf("viewer without credentials: %d", code)
	}
	code, body := httpGet(t, r.ep.ViewerURL+"plates/plate%20W", r.ep.AccessKey, r.ep.SecretKey)
	if code != 200 || !strings.Contains(body, `data-id="w1"`) {
		t.Fatalf("up's viewer: %d %.300s", code, body)
	}
	// The listing's modification times reach the page (the plate's last update).
	if code, body := httpGet(t, r.ep.ViewerURL, r.ep.AccessKey, r.ep.SecretKey); code != 200 || !strings.Contains(body, `<time datetime="20`) {
		t.Errorf("plates page without a last-update time: %d %.300s", code, body)
	}
	if !strings.Contains(r.out.String(), "viewer        "+r.ep.ViewerURL) {
		t.Errorf("hpa up does not print the viewer URL:\n%s", r.out.String())
	}

	// hpa web with endpoints.json, a token, and the model pointer unset: the static model.
	addr := freeAddr(t)
	url := "http://" + addr + "/"
	root := newRoot()
	out := &syncBuffer{}
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs([]string{"web", "--endpoints", filepath.Join(dataDir, "endpoints.json"), "--addr", addr, "--token", "tok-web", "--model", manifest})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "plate viewer at "+url); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("hpa web: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("hpa web did not start:\n%s", out.String())
		}
	}
	if code, _ := httpGet(t, url, "", ""); code != 401 {
		t.Errorf("hpa web without credentials: %d", code)
	}
	for _, c := range [][2]string{{r.ep.AccessKey, r.ep.SecretKey}, {"biologist", "tok-web"}} {
		code, body := httpGet(t, url+"plates/plate%20W/samples/w1", c[0], c[1])
		if code != 200 || !strings.Contains(body, `id="model-version">v1<`) {
			t.Errorf("hpa web as %s: %d %.300s", c[0], code, body)
		}
	}
	if code, body := httpGet(t, url+"models", "x", "tok-web"); code != 200 || !strings.Contains(body, `id="current-version">v1<`) {
		t.Errorf("hpa web models page: %d %.300s", code, body)
	}
	// An event stream is open when the service stops: it ends, and hpa web stops promptly.
	req, _ := http.NewRequest("GET", url+"events", nil)
	req.SetBasicAuth("x", "tok-web")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("events: %v %v", err, resp)
	}
	defer resp.Body.Close()
	t0 := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("hpa web: %v", err)
		}
		if d := time.Since(t0); d > 3*time.Second {
			t.Errorf("hpa web took %v to stop with an event stream open", d)
		}
	case <-time.After(10 * time.Second):
		t.Error("hpa web did not stop")
	}
}

// freeAddr is a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// `hpa inference` serves the viewer on its metrics listener when it has static S3 keys or a
// token to sign in with, and leaves it off (metrics still served) otherwise.
func TestInferenceServesViewer(t *testing.T) {
	manifest := labelModelSet(t)
	dir := t.TempDir()
	s3srv, err := s3local.New(s3local.Options{Dir: filepath.Join(dir, "s3"), AccessKey: "AKINF", SecretKey: "inf-secret", Buckets: []string{"plates"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s3srv.Close(context.Background()) })

	// Each run gets a new NATS server: the consumers' existence then says the service's Setup has
	// (nearly) finished; a stop that still lands during Setup must be clean too
	// (inference.TestStopDuringSetupIsClean).
	run := func(t *testing.T, extra ...string) (addr string, stop func() string) {
		ns, err := natsembed.Start(natsembed.Options{DataDir: t.TempDir(), JetStream: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ns.Shutdown)
		addr = freeAddr(t)
		args := append([]string{"inference", "--model", manifest, "--nats-url", ns.ClientURL(), "--s3-endpoint", s3srv.Endpoint(),
			"--s3-path-style", "--bucket", "plates", "--metrics-addr", addr}, extra...)
		root := newRoot()
		out := &syncBuffer{}
		root.SetOut(out)
		root.SetErr(out)
		root.SetArgs(args)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- root.ExecuteContext(ctx) }()
		// Ready once the consumers exist (the service's Setup is done) and the listener answers.
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			// The replay path's labeler consumer is the last thing Setup creates.
			_, cerr := js.Consumer(ctx, "HPA_READY", "hpa-labeler")
			if cerr == nil {
				_, cerr = js.Consumer(ctx, bus.ReplayReadyStream, bus.ReplayLabelConsumer)
			}
			if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 && cerr == nil {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("hpa inference not ready:\n%s", out.String())
			}
		}
		return addr, func() string {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("hpa inference: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("hpa inference did not stop")
			}
			return out.String()
		}
	}

	t.Run("static keys", func(t *testing.T) {
		addr, stop := run(t, "--s3-access-key", "AKINF", "--s3-secret-key", "inf-secret")
		if code, _ := httpGet(t, "http://"+addr+"/", "", ""); code != 401 {
			t.Errorf("viewer without credentials: %d", code)
		}
		if code, body := httpGet(t, "http://"+addr+"/", "AKINF", "inf-secret"); code != 200 || !strings.Contains(body, "Plates") {
			t.Errorf("viewer: %d %.200s", code, body)
		}
		if code, _ := httpGet(t, "http://"+addr+"/metrics", "", ""); code != 200 {
			t.Errorf("metrics: %d", code)
		}
		if out := stop(); !strings.Contains(out, "plate viewer") {
			t.Errorf("no viewer URL logged:\n%s", out)
		}
	})
	t.Run("credential chain without a token", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "AKINF")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "inf-secret")
		addr, stop := run(t)
		if code, _ := httpGet(t, "http://"+addr+"/", "AKINF", "inf-secret"); code != 404 {
			t.Errorf("viewer without a way to sign in: %d, want it off (404)", code)
		}
		if out := stop(); !strings.Contains(out, "plate viewer off") {
			t.Errorf("no warning:\n%s", out)
		}
	})
	t.Run("credential chain with a token", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "AKINF")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "inf-secret")
		t.Setenv("HPA_WEB_TOKEN", "tok-inf")
		addr, stop := run(t)
		if code, _ := httpGet(t, "http://"+addr+"/models", "biologist", "tok-inf"); code != 200 {
			t.Errorf("viewer with the token: %d", code)
		}
		if code, _ := httpGet(t, "http://"+addr+"/models", "AKINF", "inf-secret"); code != 401 {
			t.Errorf("the chain's keys are not the viewer's: %d, want 401", code)
		}
		stop()
	})
}
