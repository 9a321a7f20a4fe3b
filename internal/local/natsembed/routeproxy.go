package natsembed

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
)

// routeProxy stands in front of one node's route port: every route connection to that node goes
// through it (the node advertises the proxy's address), so the cluster can cut a node off at once,
// as a dead machine is, without the node's cooperation (Cluster.Crash).
//
// The route protocol starts with the soliciting server's CONNECT line, whose "name" is that
// server's ID: the proxy reads it to know which node is on the other end.
type routeProxy struct {
	l      net.Listener
	target string // the node's real route address
	cut    *cutSet

	mu    sync.Mutex
	conns map[*proxiedConn]struct{}
	done  bool
}

// proxiedConn is one route connection through the proxy: from is the soliciting node's side.
type proxiedConn struct {
	from, to  net.Conn
	solicitor string // server ID from the CONNECT line
}

// cutSet holds the IDs of crashed nodes: their route connections are refused by every proxy.
type cutSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (c *cutSet) has(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ids[id]
}

func (c *cutSet) add(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ids[id] = true
}

func newRouteProxy(host string, cut *cutSet) (*routeProxy, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, &Error{Op: "start", Reason: "no free port for a route proxy on " + host, Err: err}
	}
	p := &routeProxy{l: l, cut: cut, conns: map[*proxiedConn]struct{}{}}
	return p, nil
}

// addr is where the node's peers connect (host:port).
func (p *routeProxy) addr() string { return p.l.Addr().String() }

// serve forwards connections to target until close.
func (p *routeProxy) serve(target string) {
	p.target = target
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *routeProxy) forward(from net.Conn) {
	br := bufio.NewReaderSize(from, 64<<10)
	line, err := br.ReadSlice('\n')
	if err != nil {
		_ = from.Close()
		return
	}
	id := connectName(line)
	if id != "" && p.cut.has(id) {
		_ = from.Close()
		return
	}
	to, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = from.Close()
		return
	}
	pc := &proxiedConn{from: from, to: to, solicitor: id}
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		_ = from.Close()
		_ = to.Close()
		return
	}
	p.conns[pc] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, pc)
		p.mu.Unlock()
		_ = from.Close()
		_ = to.Close()
	}()
	if _, err := to.Write(line); err != nil {
		return
	}
	errc := make(chan error, 2)
	go func() { _, err := io.Copy(to, br); errc <- err }()
	go func() { _, err := io.Copy(from, to); errc <- err }()
	<-errc // either side gone: close both (deferred), which ends the other copy
}

// connectName is the "name" of a route CONNECT line (the soliciting server's ID), "" when the
// line is not one.
func connectName(line []byte) string {
	rest, ok := bytes.CutPrefix(line, []byte("CONNECT "))
	if !ok {
		return ""
	}
	var c struct {
		Name string `json:"name"`
	}
	if json.Unmarshal([]byte(strings.TrimSpace(string(rest))), &c) != nil {
		return ""
	}
	return c.Name
}

// drop closes the connections solicited by node id (all of them when id is "") and, for "", stops
// accepting.
func (p *routeProxy) drop(id string) {
	p.mu.Lock()
	var victims []*proxiedConn
	for pc := range p.conns {
		if id == "" || pc.solicitor == id {
			victims = append(victims, pc)
		}
	}
	if id == "" {
		p.done = true
		_ = p.l.Close()
	}
	p.mu.Unlock()
	for _, pc := range victims {
		_ = pc.from.Close()
		_ = pc.to.Close()
	}
}
