package viewer

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// hub fans label events out to the browsers holding an event stream open. A client that does not
// keep up loses events and is told to resynchronize (it reloads what it shows).
type hub struct {
	mu      sync.Mutex
	clients map[*sseClient]struct{}
	max     int
}

type sseClient struct {
	plate  string // "" = every plate
	ch     chan LabelEvent
	lagged chan struct{}
}

// clientBuffer is how many events a client may be behind before it has to resynchronize.
const clientBuffer = 256

var errTooManyStreams = fmt.Errorf("too many event streams open")

func newHub(max int) *hub { return &hub{clients: map[*sseClient]struct{}{}, max: max} }

func (h *hub) add(plate string) (*sseClient, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) >= h.max {
		return nil, errTooManyStreams
	}
	c := &sseClient{plate: plate, ch: make(chan LabelEvent, clientBuffer), lagged: make(chan struct{}, 1)}
	h.clients[c] = struct{}{}
	return c, nil
}

func (h *hub) remove(c *sseClient) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// publish never blocks.
func (h *hub) publish(ev LabelEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if c.plate != "" && c.plate != ev.Plate {
			continue
		}
		select {
		case c.ch <- ev:
		default:
			select {
			case c.lagged <- struct{}{}:
			default:
			}
		}
	}
}

// onEvent is the EventSource callback: it drops what the event makes stale and tells the browsers.
func (v *Viewer) onEvent(ev LabelEvent) {
	if ev.Plate == "" || checkName(ev.Plate, true) != nil || (ev.SampleID != "" && checkName(ev.SampleID, false) != nil) {
		return
	}
	v.idx.invalidate(ev.Plate)
	v.hub.publish(ev)
}

// serveEvents is GET /events[?plate=P]: a server-sent event stream. Events:
//
//	event: sample   data: {"kind":"label"|"error","plate":...,"sample_id":...,"error_kind":...}
//	event: resync   the client missed events: reload what it shows
//
// A comment line every HeartbeatInterval keeps proxies from closing an idle stream; the stream
// ends after SSELifetime and the browser reconnects (EventSource does so by itself).
func (v *Viewer) serveEvents(w http.ResponseWriter, r *http.Request) {
	plate := r.URL.Query().Get("plate")
	if plate != "" && checkName(plate, true) != nil {
		http.Error(w, "bad plate name", http.StatusBadRequest)
		return
	}
	c, err := v.hub.add(plate)
	if err != nil {
		w.Header().Set("Retry-After", "10")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer v.hub.remove(c)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a long-lived response: no write deadline
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 3000\n: connected\n\n"); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	beat := time.NewTicker(v.cfg.HeartbeatInterval)
	defer beat.Stop()
	end := time.NewTimer(v.cfg.SSELifetime)
	defer end.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-v.closed:
			return
		case <-end.C:
			return
		case <-beat.C:
			_, err = fmt.Fprint(w, ": keep-alive\n\n")
		case <-c.lagged:
			_, err = fmt.Fprint(w, "event: resync\ndata: {}\n\n")
		case ev := <-c.ch:
			b, _ := json.Marshal(ev)
			_, err = fmt.Fprintf(w, "event: sample\ndata: %s\n\n", b)
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}
