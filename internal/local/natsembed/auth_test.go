package natsembed

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// With User/Password set, a client without them or with a wrong password is refused; the right
// ones connect and use JetStream.
func TestAuthRequired(t *testing.T) {
	s, err := Start(Options{DataDir: t.TempDir(), JetStream: true, User: "hpa", Password: "s3cret-pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	for _, c := range []struct {
		name string
		opts []nats.Option
	}{
		{"no credentials", nil},
		{"wrong password", []nats.Option{nats.UserInfo("hpa", "wrong")}},
		{"wrong user", []nats.Option{nats.UserInfo("other", "s3cret-pw")}},
		{"token instead", []nats.Option{nats.Token("s3cret-pw")}},
	} {
		nc, err := nats.Connect(s.ClientURL(), append(c.opts, nats.MaxReconnects(0))...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connection accepted", c.name)
			continue
		}
		if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: error %v, want an authorization violation", c.name, err)
		}
	}
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("hpa", "s3cret-pw"))
	if err != nil {
		t.Fatalf("right credentials refused: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "A", Subjects: []string{"a.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "a.b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(Options{User: "only-user"}); err == nil {
		t.Error("User without Password accepted")
	}
}
