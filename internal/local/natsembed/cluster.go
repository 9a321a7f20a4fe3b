package natsembed

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Cluster is a JetStream cluster of embedded servers in this process, each with its own store
// directory and client port, joined by routes. It stands in for a NATS cluster of several machines
// in tests: streams and KV buckets with Replicas up to the cluster size, leader elections when a
// node stops.
type Cluster struct {
	Servers []*Server
	name    string
}

// DefaultClusterName names the cluster of StartCluster when o.ClusterName is empty.
const DefaultClusterName = "hpa-cluster"

// StartCluster starts n (>= 1) servers with JetStream and routes to each other, node i storing
// under <o.DataDir>/node-<i> and named <o.ServerName or "hpa">-<i>; the other fields of o
// (credentials, sync, limits, Log, Host) apply to every node, Port and ClusterPort are picked
// free. It returns once every node accepts connections and JetStream has a meta leader that
// every node follows.
func StartCluster(n int, o Options) (*Cluster, error) {
	if n < 1 {
		return nil, &Error{Op: "options", Reason: "a cluster needs at least one server, got " + strconv.Itoa(n)}
	}
	if o.DataDir == "" {
		return nil, &Error{Op: "options", Reason: "a cluster needs a DataDir"}
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.ClusterName == "" {
		o.ClusterName = DefaultClusterName
	}
	base := o.ServerName
	if base == "" {
		base = "hpa"
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	// Route ports are chosen up front so that every node can list all others.
	ports, err := freePorts(o.Host, n)
	if err != nil {
		return nil, err
	}
	routes := make([]string, n)
	for i, p := range ports {
		u := url.URL{Scheme: "nats-route", Host: net.JoinHostPort(o.Host, strconv.Itoa(p))}
		if o.User != "" {
			u.User = url.UserPassword(o.User, o.Password)
		}
		routes[i] = u.String()
	}
	c := &Cluster{name: o.ClusterName}
	for i := 0; i < n; i++ {
		no := o
		no.JetStream = true
		no.Port = 0
		no.ClusterPort = ports[i]
		no.ServerName = base + "-" + strconv.Itoa(i)
		no.DataDir = filepath.Join(o.DataDir, "node-"+strconv.Itoa(i))
		no.Routes = nil
		for j, r := range routes {
			if j != i {
				no.Routes = append(no.Routes, r)
			}
		}
		s, err := Start(no)
		if err != nil {
			c.Shutdown()
			return nil, err
		}
		c.Servers = append(c.Servers, s)
	}
	if err := c.WaitMetaLeader(o.ReadyTimeout * 3); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// WaitMetaLeader waits until the running nodes have a JetStream meta leader and every running
// node is current with it.
func (c *Cluster) WaitMetaLeader(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		leader, current := false, true
		for _, s := range c.Servers {
			if !s.Running() {
				continue
			}
			if s.ns.JetStreamIsLeader() {
				leader = true
			}
			if !s.ns.JetStreamIsCurrent() {
				current = false
			}
		}
		if leader && current {
			return nil
		}
		if time.Now().After(deadline) {
			return &Error{Op: "start", Reason: fmt.Sprintf("cluster %s has no JetStream meta leader after %s", c.name, timeout)}
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// ClientURLs is the comma-separated client URLs of the running nodes (what nats.Connect and
// bus.Config.URL take).
func (c *Cluster) ClientURLs() string {
	var urls []string
	for _, s := range c.Servers {
		if s.Running() {
			urls = append(urls, s.ClientURL())
		}
	}
	return strings.Join(urls, ",")
}

// Server returns the node named name (Options.ServerName, as JetStream reports leaders), or nil.
func (c *Cluster) Server(name string) *Server {
	for _, s := range c.Servers {
		if s.opts.ServerName == name {
			return s
		}
	}
	return nil
}

// Name is the server's name (what JetStream's cluster info reports as leader and replicas).
func (s *Server) Name() string { return s.opts.ServerName }

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	if c == nil {
		return
	}
	for _, s := range c.Servers {
		s.Shutdown()
	}
}

// freePorts finds n free TCP ports on host (held open together so that they differ).
func freePorts(host string, n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, &Error{Op: "start", Reason: "no free port for a cluster route on " + host, Err: err}
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
