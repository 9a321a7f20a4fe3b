package natsembed

import (
	"fmt"
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
	proxies []*routeProxy // proxies[i] forwards the routes to Servers[i]
	cut     *cutSet
}

// DefaultClusterName names the cluster of StartCluster when o.ClusterName is empty.
const DefaultClusterName = "hpa-cluster"

// StartCluster starts n (>= 2) servers with JetStream and routes to each other, node i storing
// under <o.DataDir>/node-<i> and named <o.ServerName or "hpa">-<i>; the other fields of o
// (credentials, sync, limits, Log, Host) apply to every node, Port and ClusterPort are picked
// free. Routes go through in-process proxies (see Crash). It returns once every node accepts connections and JetStream has a meta leader that
// every node follows.
func StartCluster(n int, o Options) (*Cluster, error) {
	if n < 2 {
		// JetStream refuses to run clustered without routes.
		return nil, &Error{Op: "options", Reason: "a cluster needs at least two servers, got " + strconv.Itoa(n)}
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
	// Each node's routes go through a proxy of the cluster (the node advertises it), so Crash can
	// cut a node off at once. The proxies listen first, so every node can list all the others.
	c := &Cluster{name: o.ClusterName, cut: &cutSet{ids: map[string]bool{}}}
	for i := 0; i < n; i++ {
		p, err := newRouteProxy(o.Host, c.cut)
		if err != nil {
			c.Shutdown()
			return nil, err
		}
		c.proxies = append(c.proxies, p)
	}
	routes := make([]string, n)
	for i, p := range c.proxies {
		u := url.URL{Scheme: "nats-route", Host: p.addr()}
		if o.User != "" {
			u.User = url.UserPassword(o.User, o.Password)
		}
		routes[i] = u.String()
	}
	for i := 0; i < n; i++ {
		no := o
		no.JetStream = true
		no.Port = 0
		no.ClusterPort = 0
		no.ClusterAdvertise = c.proxies[i].addr()
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
		go c.proxies[i].serve(s.ns.ClusterAddr().String())
	}
	if err := c.WaitMetaLeader(o.ReadyTimeout * 3); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// WaitMetaLeader waits until the running nodes have a JetStream meta leader, every running node
// is current with it, and the leader sees every running node online (its stats received): only
// then can it place a stream with a replica on each node (before that, creating one fails with
// "no suitable peers for placement, peer offline").
func (c *Cluster) WaitMetaLeader(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		running, online, current := 0, -1, true
		for _, s := range c.Servers {
			if !s.Running() {
				continue
			}
			running++
			if s.ns.JetStreamIsLeader() {
				online = len(s.ns.JetStreamClusterPeers())
			}
			if !s.ns.JetStreamIsCurrent() {
				current = false
			}
		}
		if online == running && current {
			return nil
		}
		if time.Now().After(deadline) {
			return &Error{Op: "start", Reason: fmt.Sprintf("cluster %s: no JetStream meta leader that sees every running node online after %s", c.name, timeout)}
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

// Crash stops node name as a dead machine would: every route connection to and from it is cut
// at once, so it can hand nothing over (no leader stepdown, no goodbye), then its process part
// stops (client connections closed). Its peers learn of the loss only from the dead routes and
// elect new leaders after the raft election timeout. Shutdown, by contrast, is a clean stop: the
// node transfers its leaderships first.
func (c *Cluster) Crash(name string) error {
	i := -1
	for k, s := range c.Servers {
		if s.opts.ServerName == name {
			i = k
		}
	}
	if i < 0 {
		return &Error{Op: "crash", Reason: "no node " + name + " in cluster " + c.name}
	}
	s := c.Servers[i]
	c.cut.add(s.ns.ID())
	c.proxies[i].drop("")
	for k, p := range c.proxies {
		if k != i {
			p.drop(s.ns.ID())
		}
	}
	s.Shutdown()
	return nil
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	if c == nil {
		return
	}
	for _, s := range c.Servers {
		s.Shutdown()
	}
	for _, p := range c.proxies {
		p.drop("")
	}
}
