package viewer

import (
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go"

	"github.com/hpa-plates/hpa/internal/bus"
)

// NATSEvents is the EventSource of an inference deployment: the label-written events
// (bus.LabelWritten, core NATS, on the topology's labels subjects) and the dead letters of failed
// samples (bus.DeadLetter on the DLQ subjects, which a plain subscription sees as they are stored
// in the dead-letter stream).
type NATSEvents struct {
	Conn *nats.Conn
	// Topology names the subjects; zero fields take the bus defaults.
	Topology bus.Topology
}

// Subscribe implements EventSource.
func (n NATSEvents) Subscribe(fn func(LabelEvent)) (func(), error) {
	if n.Conn == nil {
		return nil, errors.New("viewer: NATSEvents without a connection")
	}
	t := n.Topology
	t.Fill()
	s1, err := n.Conn.Subscribe(t.LabelsSubject+".>", func(m *nats.Msg) {
		var ev bus.LabelWritten
		if json.Unmarshal(m.Data, &ev) == nil && ev.Plate != "" && ev.SampleID != "" {
			fn(LabelEvent{Kind: "label", Plate: ev.Plate, SampleID: ev.SampleID})
		}
	})
	if err != nil {
		return nil, err
	}
	s2, err := n.Conn.Subscribe(t.DLQSubject+".>", func(m *nats.Msg) {
		var d bus.DeadLetter
		if json.Unmarshal(m.Data, &d) == nil && d.Plate != "" && d.SampleID != "" {
			fn(LabelEvent{Kind: "error", Plate: d.Plate, SampleID: d.SampleID, ErrorKind: d.Kind})
		}
	})
	if err != nil {
		_ = s1.Unsubscribe()
		return nil, err
	}
	return func() { _ = s1.Unsubscribe(); _ = s2.Unsubscribe() }, nil
}
