package natsembed

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestStartPublishRestartKeepsStream(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(Options{DataDir: dir, JetStream: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:") || s.Port() == 0 {
		t.Fatalf("ClientURL %q port %d", s.ClientURL(), s.Port())
	}
	if strings.HasSuffix(s.ClientURL(), ":-1") || strings.HasSuffix(s.ClientURL(), ":0") {
		t.Fatalf("ClientURL %q has no real port", s.ClientURL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		ack, err := js.Publish(ctx, "ev.b", []byte("m"+strconv.Itoa(i)), jetstream.WithMsgID("id-"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		if ack.Sequence != uint64(i+1) {
			t.Fatalf("seq %d want %d", ack.Sequence, i+1)
		}
	}
	// Duplicate message id inside the dedup window is not stored again.
	ack, err := js.Publish(ctx, "ev.b", []byte("again"), jetstream.WithMsgID("id-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Duplicate {
		t.Fatalf("expected duplicate ack, got %+v", ack)
	}
	nc.Close()
	s.Shutdown()
	s.Shutdown() // idempotent
	if s.Running() {
		t.Fatal("still running after Shutdown")
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
		t.Fatalf("no file store under DataDir: %v", err)
	}

	s2, err := Start(Options{DataDir: dir, JetStream: true, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown()
	if jc := s2.NATS().JetStreamConfig(); jc == nil || !jc.SyncAlways || jc.StoreDir == "" {
		t.Fatalf("JetStream config after restart: %+v", jc)
	}
	nc2, err := nats.Connect(s2.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	st, err := js2.Stream(ctx, "EV")
	if err != nil {
		t.Fatalf("stream lost across restart: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("msgs after restart = %d, want 3", info.State.Msgs)
	}
	m, err := st.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "m1" {
		t.Fatalf("msg 2 = %q", m.Data)
	}
}

func TestFixedPortAndPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_, err = Start(Options{Port: port, ReadyTimeout: 2 * time.Second})
	var e *Error
	if !errors.As(err, &e) || e.Op != "start" {
		t.Fatalf("port in use: got %v", err)
	}
	l.Close()
	s, err := Start(Options{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if s.Port() != port || !strings.HasSuffix(s.ClientURL(), ":"+strconv.Itoa(port)) {
		t.Fatalf("port %d url %s want %d", s.Port(), s.ClientURL(), port)
	}
	if s.NATS().JetStreamEnabled() {
		t.Fatal("JetStream enabled without being asked")
	}
}

func TestBadOptions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		o    Options
		op   string
	}{
		{"jetstream without dir", Options{JetStream: true}, "options"},
		{"negative port", Options{Port: -5}, "options"},
		{"huge port", Options{Port: 70000}, "options"},
		{"negative store", Options{JetStream: true, DataDir: t.TempDir(), MaxStore: -1}, "options"},
		{"datadir is a file", Options{JetStream: true, DataDir: file}, "datadir"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Start(c.o)
			if err == nil {
				s.Shutdown()
				t.Fatal("no error")
			}
			var e *Error
			if !errors.As(err, &e) || e.Op != c.op {
				t.Fatalf("got %v, want op %s", err, c.op)
			}
		})
	}
}

func TestMaxStoreIsApplied(t *testing.T) {
	s, err := Start(Options{DataDir: t.TempDir(), JetStream: true, MaxStore: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A stream asking for more file storage than the server has must be refused.
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "BIG", Subjects: []string{"big"}, MaxBytes: 8 << 20})
	if err == nil {
		t.Fatal("stream bigger than MaxStore was accepted")
	}
}
