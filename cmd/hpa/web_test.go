package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/config"
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
	if !strings.Contains(r.out.String(), "viewer        "+r.ep.ViewerURL) {
		t.Errorf("hpa up does not print the viewer URL:\n%s", r.out.String())
	}

	// hpa web with endpoints.json, a token, and the model pointer unset: the static model.
	v := config.New()
	cmd := newWebCmd(v)
	if err := cmd.Flags().Parse([]string{"--endpoints", filepath.Join(dataDir, "endpoints.json"), "--addr", "127.0.0.1:0",
		"--token", "tok-web", "--model", manifest}); err != nil {
		t.Fatal(err)
	}
	config.BindFlags(v, cmd, "web", webFlagKeys)
	if err := loadEndpoints(v, v.GetString("web.endpoints")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	out := &syncBuffer{}
	go func() { done <- runWeb(ctx, v, out, out, ready) }()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("hpa web: %v\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		t.Fatal("hpa web did not start")
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
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("hpa web: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("hpa web did not stop")
	}
}
