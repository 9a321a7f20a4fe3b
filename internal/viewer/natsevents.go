package viewer

import (
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go"
)

// NATSEvents is the EventSource of an inference deployment: the label-written events
// (core NATS, <LabelsSubject>.<plate token>, body {"plate","sample_id",...}) and the dead-letter
// records of failed samples (<DLQSubject>.<plate token>, body {"plate","sample_id","kind",...}),
// which a plain subscription sees as they are stored in the dead-letter stream.
type NATSEvents struct {
	Conn          *nats.Conn
	LabelsSubject string // default "hpa.labels"
	DLQSubject    string // default "hpa.dlq"
}

// Subscribe implements EventSource.
func (n NATSEvents) Subscribe(fn func(LabelEvent)) (func(), error) {
	if n.Conn == nil {
		return nil, errors.New("viewer: NATSEvents without a connection")
	}
	labels, dlq := n.LabelsSubject, n.DLQSubject
	if labels == "" {
		labels = "hpa.labels"
	}
	if dlq == "" {
		dlq = "hpa.dlq"
	}
	type body struct {
		Plate    string `json:"plate"`
		SampleID string `json:"sample_id"`
		Kind     string `json:"kind"`
	}
	s1, err := n.Conn.Subscribe(labels+".>", func(m *nats.Msg) {
		var b body
		if json.Unmarshal(m.Data, &b) == nil && b.Plate != "" && b.SampleID != "" {
			fn(LabelEvent{Kind: "label", Plate: b.Plate, SampleID: b.SampleID})
		}
	})
	if err != nil {
		return nil, err
	}
	s2, err := n.Conn.Subscribe(dlq+".>", func(m *nats.Msg) {
		var b body
		if json.Unmarshal(m.Data, &b) == nil && b.Plate != "" && b.SampleID != "" {
			fn(LabelEvent{Kind: "error", Plate: b.Plate, SampleID: b.SampleID, ErrorKind: b.Kind})
		}
	})
	if err != nil {
		_ = s1.Unsubscribe()
		return nil, err
	}
	return func() { _ = s1.Unsubscribe(); _ = s2.Unsubscribe() }, nil
}
