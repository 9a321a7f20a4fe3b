package serve

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, LogConfig{Level: "warn", Format: "json"})
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	if s := buf.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"msg":"shown"`) {
		t.Errorf("json warn logger wrote %q", s)
	}
	buf.Reset()
	NewLogger(&buf, LogConfig{Level: "bogus"}).Info("default level")
	if s := buf.String(); !strings.Contains(s, "msg=\"default level\"") {
		t.Errorf("text logger wrote %q", s)
	}
}

func TestListenHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "serve_test_total", Help: "x"})
	reg.MustRegister(c)
	c.Add(3)
	var notReady error = errors.New("no model loaded")
	l, err := Listen("127.0.0.1:0", Handler(reg, func() error { return notReady }), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + l.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "no model loaded") {
		t.Errorf("readyz before %d %q", code, body)
	}
	notReady = nil
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz after %d", code)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "serve_test_total 3") {
		t.Errorf("metrics %q", body)
	}
	off, err := Listen("", nil, nil)
	if err != nil || off.Addr() != "" || off.Close() != nil {
		t.Errorf("off listener: %v", err)
	}
	if _, err := Listen(l.Addr(), nil, nil); err == nil {
		t.Error("listening on a busy address succeeded")
	}
}

// A failing stage stops the others at once and its error is returned; without failures Run
// returns when ctx ends.
func TestRunStopsOnFirstFailure(t *testing.T) {
	boom := errors.New("assembler: consumer deleted")
	stopped := make(chan struct{})
	t0 := time.Now()
	err := Run(context.Background(),
		func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil },
		func(ctx context.Context) error { time.Sleep(20 * time.Millisecond); return boom },
	)
	if !errors.Is(err, boom) {
		t.Fatalf("Run returned %v", err)
	}
	select {
	case <-stopped:
	default:
		t.Error("the healthy stage was not stopped")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return nil }); err != nil {
		t.Errorf("clean stop: %v", err)
	}
}
