// Package bus is the message contract of the HPA services and their NATS connection: the
// JetStream topology (every stream, subject, durable consumer and KV bucket name with its default),
// the messages producers and consumers exchange (S3 object events, sample ready, label written,
// dead letter, model promotion), the one object-key mapper, the single definition of each stream,
// and Connect with the nats.* settings (user/password, token, nkey, credentials file, TLS).
//
// Producers (the S3 server of `hpa up`, the AWS bridge, replay) and consumers (inference,
// training) import it; it imports no model runtime.
package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Config is the NATS connection (config section nats.*). Secrets are never logged.
type Config struct {
	// URL is one or more server URLs, comma-separated; empty means nats.DefaultURL.
	URL string
	// User and Password authenticate with user/password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// NKey is an nkey seed file.
	NKey string
	// Creds is a credentials (JWT) file.
	Creds string
	// TLSCA is a CA certificate file to trust; TLSCert and TLSKey a client certificate and key
	// (they go together).
	TLSCA, TLSCert, TLSKey string
}

// ErrTLSPair is returned by Connect when only one of TLSCert and TLSKey is set.
var ErrTLSPair = errors.New("bus: --nats-tls-cert and --nats-tls-key go together")

// Connect connects with c as client name, reconnecting forever (disconnects and reconnects are
// logged).
func Connect(c Config, name string, log *slog.Logger) (*nats.Conn, error) {
	if log == nil {
		log = slog.Default()
	}
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey seed file %s: %w", c.NKey, err)
		}
		opts = append(opts, o)
	}
	if c.Creds != "" {
		if _, err := os.Stat(c.Creds); err != nil {
			return nil, fmt.Errorf("nats: credentials file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" || c.TLSKey != "" {
		if c.TLSCert == "" || c.TLSKey == "" {
			return nil, ErrTLSPair
		}
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	url := c.URL
	if url == "" {
		url = nats.DefaultURL
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect to %s: %w", RedactURL(url), err)
	}
	return nc, nil
}

// RedactURL hides passwords in user:password@host URLs (a comma-separated list of them).
func RedactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "[REDACTED]" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
