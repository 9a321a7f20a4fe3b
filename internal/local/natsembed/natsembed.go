// Package natsembed runs a real nats-server with JetStream inside the current process.
//
// It is the message bus of the event-driven service in single-node deployments and in tests: the
// S3 server (internal/local/s3local) publishes object-created events to a JetStream stream and the
// labeling workers consume them. JetStream keeps its streams in a file store under
// Options.DataDir, so restarting on the same directory keeps every stream and message.
package natsembed

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultReadyTimeout is how long Start waits for the server to accept connections.
const DefaultReadyTimeout = 10 * time.Second

// Options configures an embedded server. The zero value is not useful: set DataDir and JetStream.
type Options struct {
	// DataDir is the JetStream file-store directory (created when missing). Required with JetStream.
	DataDir string
	// Host is the interface to listen on; empty means 127.0.0.1.
	Host string
	// Port is the client port; 0 picks a random free port (see Server.ClientURL).
	Port int
	// JetStream enables JetStream with a file store under DataDir.
	JetStream bool
	// MaxStore caps JetStream file storage in bytes; 0 lets the server pick (a share of the disk).
	MaxStore int64
	// MaxMemory caps JetStream memory storage in bytes; 0 lets the server pick.
	MaxMemory int64
	// SyncAlways fsyncs the JetStream store on every write, so an acknowledged message survives
	// a power loss, not only a process crash; slower. Off: the server syncs every SyncInterval.
	SyncAlways bool
	// SyncInterval is the store's periodic fsync interval; 0 keeps the server default (2 min).
	SyncInterval time.Duration
	// ServerName names the server (appears in logs and JetStream metadata); empty: "hpa-embedded".
	ServerName string
	// Log sends the server's own log lines to stderr; off by default.
	Log bool
	// ReadyTimeout bounds the wait for the server to accept connections; 0 means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// User and Password, when set, are required of every client (and of cluster routes):
	// connections without them are refused. Both or neither.
	User, Password string

	// ClusterName, ClusterPort and Routes make the server a node of a cluster (StartCluster sets
	// them): routes are nats-route://host:port URLs of the other nodes. Empty ClusterName: no
	// cluster.
	ClusterName string
	ClusterPort int
	Routes      []string
	// ClusterAdvertise is the host:port the node tells its peers to route to ("" = its own).
	ClusterAdvertise string
}

// Error is returned by Start when the server cannot be configured or started.
type Error struct {
	Op     string // "options", "datadir", "start"
	Reason string
	Err    error
}

func (e *Error) Error() string {
	s := "natsembed: " + e.Op + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Server is a running embedded nats-server.
type Server struct {
	ns   *server.Server
	opts Options
}

// Start configures and starts the server and waits until it accepts client connections.
func Start(o Options) (*Server, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.ServerName == "" {
		o.ServerName = "hpa-embedded"
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.Port < 0 || o.Port > 65535 {
		return nil, &Error{Op: "options", Reason: "port " + strconv.Itoa(o.Port) + " out of range 0..65535"}
	}
	if o.MaxStore < 0 || o.MaxMemory < 0 {
		return nil, &Error{Op: "options", Reason: "negative MaxStore/MaxMemory"}
	}
	if (o.User == "") != (o.Password == "") {
		return nil, &Error{Op: "options", Reason: "User and Password go together"}
	}
	if o.ClusterName == "" && (o.ClusterPort != 0 || len(o.Routes) > 0) {
		return nil, &Error{Op: "options", Reason: "ClusterPort and Routes need a ClusterName"}
	}
	if o.JetStream {
		if o.DataDir == "" {
			return nil, &Error{Op: "options", Reason: "JetStream needs a DataDir"}
		}
		if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
			return nil, &Error{Op: "datadir", Reason: "cannot create " + o.DataDir, Err: err}
		}
		if st, err := os.Stat(o.DataDir); err != nil || !st.IsDir() {
			return nil, &Error{Op: "datadir", Reason: o.DataDir + " is not a directory", Err: err}
		}
	}
	port := o.Port
	if port != 0 {
		// nats-server treats a busy port as fatal (it may exit the process when logging is on):
		// find out first and return an error instead.
		addr := net.JoinHostPort(o.Host, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, &Error{Op: "start", Reason: "cannot listen on " + addr, Err: err}
		}
		_ = l.Close()
	} else {
		port = server.RANDOM_PORT
	}
	sopts := &server.Options{
		ServerName:         o.ServerName,
		Host:               o.Host,
		Port:               port,
		JetStream:          o.JetStream,
		StoreDir:           o.DataDir,
		JetStreamMaxStore:  o.MaxStore,
		JetStreamMaxMemory: o.MaxMemory,
		SyncAlways:         o.SyncAlways,
		SyncInterval:       o.SyncInterval,
		NoSigs:             true,
		NoLog:              !o.Log,
		// No HTTP monitoring.
		HTTPPort: 0,
		Username: o.User,
		Password: o.Password,
	}
	if o.ClusterName != "" {
		routes, err := parseRoutes(o.Routes)
		if err != nil {
			return nil, err
		}
		// One route connection per pair of nodes (no pool): the extra connections of a pool are
		// solicited to the advertised address, without the route credentials.
		sopts.Cluster = server.ClusterOpts{Name: o.ClusterName, Host: o.Host, Port: o.ClusterPort,
			Username: o.User, Password: o.Password, Advertise: o.ClusterAdvertise, PoolSize: -1}
		sopts.Routes = routes
		if o.ClusterPort == 0 {
			sopts.Cluster.Port = server.RANDOM_PORT
		}
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, &Error{Op: "start", Reason: "invalid server options", Err: err}
	}
	if o.Log {
		ns.ConfigureLogger()
	}
	ns.Start()
	if !ns.ReadyForConnections(o.ReadyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, &Error{Op: "start", Reason: fmt.Sprintf("server on %s not ready within %s", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)), o.ReadyTimeout)}
	}
	if o.JetStream && !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, &Error{Op: "start", Reason: "JetStream did not start (store dir " + o.DataDir + ")"}
	}
	return &Server{ns: ns, opts: o}, nil
}

// ClientURL is the nats:// URL clients connect to (with the real port when Port was 0).
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Port is the client port the server listens on.
func (s *Server) Port() int {
	if a, ok := s.ns.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// DataDir is the JetStream store directory.
func (s *Server) DataDir() string { return s.opts.DataDir }

// Running reports whether the server still accepts connections.
func (s *Server) Running() bool { return s.ns.Running() }

// NATS exposes the underlying server for advanced use (monitoring, accounts).
func (s *Server) NATS() *server.Server { return s.ns }

// Shutdown stops the server gracefully: client connections are closed, JetStream flushes its
// store, and Shutdown returns only once everything has stopped. Calling it twice is harmless.
func (s *Server) Shutdown() {
	if s == nil || s.ns == nil {
		return
	}
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// parseRoutes parses nats-route:// URLs.
func parseRoutes(routes []string) ([]*url.URL, error) {
	var out []*url.URL
	for _, r := range routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return nil, &Error{Op: "options", Reason: "route " + r + " is not a nats-route://host:port URL", Err: err}
		}
		out = append(out, u)
	}
	return out, nil
}
