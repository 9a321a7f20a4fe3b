package local

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hpa-plates/hpa/internal/bus"
)

// The NATS server of the stack refuses clients without the generated user/password (no local
// process can forge S3 events or promotions); the stack's own clients and a client with the
// credentials of endpoints.json get in; the credentials are kept, owner-only, across restarts.
func TestStackNATSRequiresCredentials(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := Start(ctx, StackOptions{DataDir: dir, S3Addr: "127.0.0.1:0", Bucket: "plates", Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	ep := st.Endpoints
	if ep.NATSUser == "" || len(ep.NATSPassword) < 32 {
		t.Fatalf("weak or missing NATS credentials: user %q, password of %d chars", ep.NATSUser, len(ep.NATSPassword))
	}
	if !st.Conn.IsConnected() {
		t.Fatal("the stack's own connection is down")
	}
	for name, opts := range map[string][]nats.Option{
		"anonymous":      nil,
		"wrong password": {nats.UserInfo(ep.NATSUser, ep.NATSPassword+"x")},
		"S3 keys":        {nats.UserInfo(ep.AccessKey, ep.SecretKey)},
	} {
		if nc, err := nats.Connect(ep.NATSURL, append(opts, nats.MaxReconnects(0))...); err == nil {
			nc.Close()
			t.Errorf("%s client accepted", name)
		}
	}
	// The credentials of endpoints.json connect and publish.
	nc, err := bus.Connect(bus.Config{URL: ep.NATSURL, User: ep.NATSUser, Password: ep.NATSPassword}, "test", nil)
	if err != nil {
		t.Fatalf("client with the endpoints credentials: %v", err)
	}
	if err := nc.Publish(bus.EventSubject("", "plates"), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	epPath := filepath.Join(dir, "endpoints.json")
	if err := os.WriteFile(epPath, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ep.Write(epPath); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{epPath, filepath.Join(dir, "credentials.json")} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", filepath.Base(f), fi.Mode().Perm())
		}
	}
	back, err := ReadEndpoints(epPath)
	if err != nil || back.NATSUser != ep.NATSUser || back.NATSPassword != ep.NATSPassword {
		t.Fatalf("endpoints.json round trip: %+v %v", back, err)
	}
	st.Close()

	// Restart: same credentials.
	st2, err := Start(ctx, StackOptions{DataDir: dir, S3Addr: "127.0.0.1:0", Bucket: "plates", Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if st2.Endpoints.NATSUser != ep.NATSUser || st2.Endpoints.NATSPassword != ep.NATSPassword ||
		st2.Endpoints.AccessKey != ep.AccessKey {
		t.Error("credentials changed across restarts")
	}
}

// A credentials.json written before NATS required credentials gets them added; the S3 keys stay.
func TestStackCredentialsUpgrade(t *testing.T) {
	dir := t.TempDir()
	old := []byte(`{"access_key": "HPAOLD", "secret_key": "old-secret"}`)
	if err := os.WriteFile(filepath.Join(dir, "credentials.json"), old, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := credentialsOf(StackOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessKey != "HPAOLD" || c.SecretKey != "old-secret" || c.NATSUser == "" || c.NATSPassword == "" {
		t.Fatalf("upgraded credentials %+v", c)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "credentials.json"))
	var kept stackCredentials
	if err := json.Unmarshal(b, &kept); err != nil || kept != c {
		t.Fatalf("kept %+v (%v), want %+v", kept, err, c)
	}
	// Given S3 keys win over the kept ones; the NATS credentials stay the kept ones.
	c2, err := credentialsOf(StackOptions{DataDir: dir, AccessKey: "AK", SecretKey: "SK"})
	if err != nil || c2.AccessKey != "AK" || c2.NATSPassword != c.NATSPassword {
		t.Fatalf("%+v %v", c2, err)
	}
	if _, err := credentialsOf(StackOptions{DataDir: dir, AccessKey: "AK"}); err != ErrKeyPair {
		t.Errorf("one key: %v", err)
	}
}

// `hpa s3local --nats-embedded` with nats.user/nats.password: its NATS server refuses anonymous
// clients and its own event publisher gets in.
func TestServeS3EmbeddedNATSCredentials(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	var out syncWriter
	go func() {
		done <- ServeS3(ctx, S3ServerOptions{Dir: filepath.Join(dir, "s3"), Addr: "127.0.0.1:0", Region: "us-east-1",
			AccessKey: "AK", SecretKey: "SK", Buckets: []string{"plates"}, NATSEmbedded: true, NATSDir: filepath.Join(dir, "nats"),
			SubjectPrefix: bus.EventsSubjectPrefix, Stream: bus.EventsStream, NATSUser: "u1", NATSPassword: "pw1"}, &out, ready)
	}()
	var urls [2]string
	select {
	case urls = <-ready:
	case err := <-done:
		t.Fatalf("exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not ready")
	}
	if nc, err := nats.Connect(urls[1], nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("anonymous client accepted")
	}
	nc, err := nats.Connect(urls[1], nats.UserInfo("u1", "pw1"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type syncWriter struct {
	mu sync.Mutex
	b  []byte
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	return len(p), nil
}
