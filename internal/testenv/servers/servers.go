// Package servers starts the local services tests run against: an embedded NATS JetStream server
// and the in-process S3 server (internal/local). It is apart from internal/testenv, which the
// packages it starts import in their own tests.
package servers

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/local/natsembed"
	"github.com/hpa-plates/hpa/internal/local/s3local"
)

// JetStream starts an embedded NATS server with JetStream (store under dir; "" = a temporary
// directory) and connects to it; both stop when the test ends.
func JetStream(t testing.TB, dir string) (*natsembed.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "nats")
	}
	ns, err := natsembed.Start(natsembed.Options{DataDir: dir, JetStream: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return ns, nc, js
}

// S3 starts the in-process S3 server of o (Dir "" = a temporary directory) for the test.
func S3(t testing.TB, o s3local.Options) *s3local.Server {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	srv, err := s3local.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	return srv
}
