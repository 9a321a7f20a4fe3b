package bus

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ObjectRef is one channel object of a sample as its S3 event described it.
type ObjectRef struct {
	Key       string `json:"key"`
	ETag      string `json:"etag,omitempty"`
	Size      int64  `json:"size"`
	Sequencer string `json:"sequencer,omitempty"`
}

// SampleReady says the four channel objects of a sample are in the object store. It is published
// on Topology.ReadySubjectOf(plate) with the Nats-Msg-Id of MsgID, so the ready stream holds each
// complete sample once per model version and content, however often its events were seen.
type SampleReady struct {
	Plate   string       `json:"plate"`
	ID      string       `json:"id"`
	Objects [4]ObjectRef `json:"objects"` // red, green, blue, yellow
	Content string       `json:"content"` // a hash of the four objects' keys, ETags and sizes
}

// MsgID is the deduplication id of the message for the model of manifest digest.
func (m SampleReady) MsgID(digest string) string {
	return m.Plate + "/" + m.ID + "/" + digest + "/" + m.Content
}

// LabelWritten announces a label document written to the object store, on
// Topology.LabelsSubjectOf(plate) (core NATS: for watchers, not a durable fact). Fields are in
// alphabetical order, as the JSON.
type LabelWritten struct {
	Key            string `json:"key"`
	ManifestDigest string `json:"manifest_digest"`
	Plate          string `json:"plate"`
	Predicted      []int  `json:"predicted"`
	SampleID       string `json:"sample_id"`
}

// Headers of a dead-letter message.
const (
	HeaderErrorKind   = "Hpa-Error-Kind"
	HeaderErrorReason = "Hpa-Error-Reason"
)

// DeadLetter is a record on the DLQ stream: what could not be processed and why. Fields are in
// alphabetical order, as the JSON.
type DeadLetter struct {
	// Kind is the error kind (pipeline error kinds, "event", "key", "retries_exhausted", ...).
	Kind string `json:"kind"`
	// Object is the object key at fault, if any.
	Object string `json:"object"`
	// Original is the message that failed: its JSON, or its bytes as a JSON string.
	Original json.RawMessage `json:"original"`
	Plate    string          `json:"plate"`
	Reason   string          `json:"reason"`
	SampleID string          `json:"sample_id"`
}

// NewDeadLetter builds a record; original is embedded as JSON when it is JSON, else as a string.
func NewDeadLetter(plate, id, kind, reason, object string, original []byte) DeadLetter {
	return DeadLetter{Kind: kind, Object: object, Original: validJSONOrString(original), Plate: plate, Reason: reason, SampleID: id}
}

// Msg is the dead-letter message on t's DLQ subject of the plate, with the kind and the first line
// of the reason as headers.
func (d DeadLetter) Msg(t Topology) *nats.Msg {
	body, _ := json.Marshal(d)
	m := nats.NewMsg(t.DLQSubjectOf(d.Plate))
	m.Data = body
	m.Header.Set(HeaderErrorKind, d.Kind)
	m.Header.Set(HeaderErrorReason, strings.ToValidUTF8(firstLine(d.Reason), "?"))
	return m
}

// PublishDeadLetter publishes d to the DLQ stream and waits for its acknowledgement.
func PublishDeadLetter(ctx context.Context, js jetstream.JetStream, t Topology, d DeadLetter) error {
	_, err := js.PublishMsg(ctx, d.Msg(t))
	return err
}

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

func validJSONOrString(b []byte) []byte {
	if len(b) > 0 && json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}

// Promotion announces the model set to serve, on PromotedSubject. On the wire it is JSON
// {"location": "..."} ({"manifest": "..."} is read too) or the bare location. The training
// coordinator and `hpa model promote` also keep it as the durable current-model fact (KV
// ModelsBucket, key CurrentModelKey) with the version, manifest digest and dataset digest.
type Promotion struct {
	Location string `json:"location"`
	// Version is the model-set version; ManifestDigest the sha256 of its manifest.json;
	// DatasetDigest the digest of the dataset snapshot it was trained on ("" when unknown).
	Version        string `json:"version,omitempty"`
	ManifestDigest string `json:"manifest_digest,omitempty"`
	DatasetDigest  string `json:"dataset_digest,omitempty"`
	// Previous is the version it replaced; Time when it was promoted (RFC 3339).
	Previous string `json:"previous,omitempty"`
	Time     string `json:"time,omitempty"`
}

// ParsePromotion reads a promotion body; the location is "" when there is none.
func ParsePromotion(b []byte) Promotion {
	var v struct {
		Location string `json:"location"`
		Manifest string `json:"manifest"`
	}
	loc := string(b)
	if json.Unmarshal(b, &v) == nil {
		loc = v.Location
		if loc == "" {
			loc = v.Manifest
		}
	}
	p := Promotion{Location: strings.TrimSpace(loc)}
	var full Promotion
	if json.Unmarshal(b, &full) == nil {
		p.Version, p.ManifestDigest, p.DatasetDigest, p.Previous, p.Time = full.Version, full.ManifestDigest, full.DatasetDigest, full.Previous, full.Time
	}
	return p
}
