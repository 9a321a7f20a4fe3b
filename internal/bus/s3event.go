// S3 event notifications: ParseS3Events accepts the notification JSON as Amazon S3 sends it
// (eventVersion 2.x, a "Records" array, object keys URL-encoded with '+' for spaces), as MinIO
// publishes it to NATS and other targets (the same records wrapped in {"EventName","Key","Records"}),
// wrapped in an SNS envelope, as Amazon EventBridge delivers it ("detail-type": "Object Created" /
// "Object Deleted", one object per event; other S3 detail types yield no events), and the
// s3:TestEvent S3 sends when a notification is configured (which yields no events). EncodeS3Events writes the Amazon format; it is what the local S3 server
// (internal/local/s3local) publishes.

package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ObjectEvent is one object-level event, with the key decoded.
type ObjectEvent struct {
	Bucket    string
	Key       string // decoded object key ("incoming/plate 1/X_blue.png")
	Size      int64
	ETag      string // without quotes
	VersionID string
	Sequencer string // orders events of the same key; compare with CompareSequencer
	EventName string // as sent: "ObjectCreated:Put" (AWS) or "s3:ObjectCreated:Put" (MinIO)
	EventTime time.Time
	Region    string
	Source    string // eventSource: "aws:s3", "minio:s3"
}

// Type is the event name without the "s3:" prefix MinIO adds: "ObjectCreated:Put".
func (e ObjectEvent) Type() string { return strings.TrimPrefix(e.EventName, "s3:") }

// IsCreate reports whether the event says an object was created (Put, Post, Copy,
// CompleteMultipartUpload, ...), i.e. there is new content to read.
func (e ObjectEvent) IsCreate() bool { return strings.HasPrefix(e.Type(), "ObjectCreated:") }

// IsRemove reports whether the event says an object was deleted.
func (e ObjectEvent) IsRemove() bool { return strings.HasPrefix(e.Type(), "ObjectRemoved:") }

// S3EventError is returned for notification bodies that cannot be understood. Record is the index in
// Records (-1 for the envelope), Field the JSON field at fault.
type S3EventError struct {
	Record int
	Field  string
	Reason string
	Err    error
}

func (e *S3EventError) Error() string {
	var b strings.Builder
	b.WriteString("s3 event: ")
	if e.Record >= 0 {
		fmt.Fprintf(&b, "record %d: ", e.Record)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Reason)
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *S3EventError) Unwrap() error { return e.Err }

// ErrUnsupportedVersion is wrapped by S3EventError when a record's eventVersion is not 2.x.
var ErrUnsupportedVersion = errors.New("unsupported eventVersion")

// wire types: the fields we read (json ignores the rest).
type envelope struct {
	// MinIO wrapper.
	EventName string `json:"EventName"`
	Key       string `json:"Key"`
	// AWS (and MinIO inside the wrapper).
	Records *[]record `json:"Records"`
	// s3:TestEvent.
	Event string `json:"Event"`
	// SNS envelope: the S3 notification as a JSON string.
	Type    string `json:"Type"`
	Message string `json:"Message"`
	// EventBridge event.
	DetailType *string       `json:"detail-type"`
	EBSource   string        `json:"source"`
	EBTime     string        `json:"time"`
	EBRegion   string        `json:"region"`
	Detail     *bridgeDetail `json:"detail"`
}

// bridgeDetail is the "detail" of an Amazon EventBridge S3 event.
type bridgeDetail struct {
	Bucket struct {
		Name string `json:"name"`
	} `json:"bucket"`
	Object struct {
		Key       *string     `json:"key"`
		Size      json.Number `json:"size"`
		ETag      string      `json:"etag"`
		VersionID string      `json:"version-id"`
		Sequencer string      `json:"sequencer"`
	} `json:"object"`
	Reason       string `json:"reason"`
	DeletionType string `json:"deletion-type"`
}

type record struct {
	EventVersion string `json:"eventVersion"`
	EventSource  string `json:"eventSource"`
	AWSRegion    string `json:"awsRegion"`
	EventTime    string `json:"eventTime"`
	EventName    string `json:"eventName"`
	S3           *struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key       *string     `json:"key"`
			Size      json.Number `json:"size"`
			ETag      string      `json:"eTag"`
			VersionID string      `json:"versionId"`
			Sequencer string      `json:"sequencer"`
		} `json:"object"`
	} `json:"s3"`
}

// Parse decodes one notification message into its object events. A test event (s3:TestEvent)
// gives an empty slice and no error. Records of other services (eventSource not "*:s3") are an
// error, as are records without a bucket or key, undecodable keys and non-2.x versions.
func ParseS3Events(data []byte) ([]ObjectEvent, error) {
	return parse(data, 0)
}

func parse(data []byte, depth int) ([]ObjectEvent, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, &S3EventError{Record: -1, Reason: "empty message"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var env envelope
	if err := dec.Decode(&env); err != nil {
		return nil, &S3EventError{Record: -1, Reason: "malformed JSON", Err: err}
	}
	if dec.More() {
		return nil, &S3EventError{Record: -1, Reason: "trailing data after the JSON object"}
	}
	if env.Records == nil {
		switch {
		case env.DetailType != nil:
			return env.bridgeEvents()
		case env.Event == "s3:TestEvent":
			return []ObjectEvent{}, nil
		case env.Type == "Notification" && env.Message != "" && depth == 0:
			evs, err := parse([]byte(env.Message), depth+1)
			if err != nil {
				var pe *S3EventError
				if errors.As(err, &pe) && pe.Field == "" && pe.Record < 0 {
					pe.Field = "Message"
				}
			}
			return evs, err
		case env.EventName != "" && env.Key != "":
			// A MinIO wrapper without records: the top-level Key is "bucket/key" (decoded).
			bucket, key, ok := strings.Cut(env.Key, "/")
			if !ok || bucket == "" || key == "" {
				return nil, &S3EventError{Record: -1, Field: "Key", Reason: fmt.Sprintf("%q is not bucket/key", env.Key)}
			}
			return []ObjectEvent{{Bucket: bucket, Key: key, EventName: env.EventName, Source: "minio:s3"}}, nil
		}
		return nil, &S3EventError{Record: -1, Field: "Records", Reason: "missing: not an S3 event notification"}
	}
	recs := *env.Records
	out := make([]ObjectEvent, 0, len(recs))
	for i, r := range recs {
		ev, err := r.event(i)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	// MinIO's wrapper also carries "bucket/key" decoded in Key; the records are authoritative.
	return out, nil
}

// bridgeReasons maps the "reason" of an EventBridge "Object Created" event to the event name
// suffix of the S3 notification format.
var bridgeReasons = map[string]string{
	"PutObject": "Put", "POST Object": "Post", "PostObject": "Post", "CopyObject": "Copy",
	"CompleteMultipartUpload": "CompleteMultipartUpload",
}

// bridgeEvents reads an EventBridge event: "Object Created" and "Object Deleted" give one object
// event; other S3 detail types (restore, tagging, ACL, ...) give none.
func (env *envelope) bridgeEvents() ([]ObjectEvent, error) {
	perr := func(field, reason string, err error) error {
		return &S3EventError{Record: -1, Field: field, Reason: reason, Err: err}
	}
	if env.EBSource != "aws.s3" {
		return nil, perr("source", fmt.Sprintf("%q is not aws.s3: not an S3 event", env.EBSource), nil)
	}
	var name string
	switch *env.DetailType {
	case "Object Created":
		suffix := bridgeReasons[env.Detail.reason()]
		if suffix == "" {
			suffix = "Put"
		}
		name = "ObjectCreated:" + suffix
	case "Object Deleted":
		name = "ObjectRemoved:Delete"
		if env.Detail != nil && env.Detail.DeletionType == "Delete Marker Created" {
			name = "ObjectRemoved:DeleteMarkerCreated"
		}
	default:
		return []ObjectEvent{}, nil
	}
	d := env.Detail
	if d == nil {
		return nil, perr("detail", "missing", nil)
	}
	if d.Bucket.Name == "" {
		return nil, perr("detail.bucket.name", "missing", nil)
	}
	if d.Object.Key == nil || *d.Object.Key == "" {
		return nil, perr("detail.object.key", "missing", nil)
	}
	key, err := DecodeS3Key(*d.Object.Key)
	if err != nil {
		return nil, perr("detail.object.key", fmt.Sprintf("cannot URL-decode %q", *d.Object.Key), err)
	}
	ev := ObjectEvent{Bucket: d.Bucket.Name, Key: key, ETag: strings.Trim(d.Object.ETag, `"`), VersionID: d.Object.VersionID,
		Sequencer: d.Object.Sequencer, EventName: name, Region: env.EBRegion, Source: "aws:s3"}
	if s := d.Object.Size.String(); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return nil, perr("detail.object.size", fmt.Sprintf("%q is not a byte count", s), err)
		}
		ev.Size = n
	}
	if env.EBTime != "" {
		t, err := time.Parse(time.RFC3339Nano, env.EBTime)
		if err != nil {
			return nil, perr("time", fmt.Sprintf("%q is not an RFC 3339 time", env.EBTime), err)
		}
		ev.EventTime = t
	}
	return []ObjectEvent{ev}, nil
}

func (d *bridgeDetail) reason() string {
	if d == nil {
		return ""
	}
	return d.Reason
}

// DedupID identifies the event for deduplication (Nats-Msg-Id): the same notification of the same
// object version delivered twice (SQS is at least once; SNS and S3 retry) gets the same id, a new
// upload of the key a new one. The version (or, unversioned, the ETag) and the sequencer tell
// uploads of one key apart.
func (e ObjectEvent) DedupID() string {
	v := e.VersionID
	if v == "" {
		v = e.ETag
	}
	return "s3:" + e.Bucket + "/" + e.Key + "#" + v + "#" + e.Sequencer + "#" + e.Type()
}

func (r record) event(i int) (ObjectEvent, error) {
	perr := func(field, reason string, err error) error {
		return &S3EventError{Record: i, Field: field, Reason: reason, Err: err}
	}
	major, _, _ := strings.Cut(r.EventVersion, ".")
	if major != "2" {
		return ObjectEvent{}, perr("eventVersion", fmt.Sprintf("%q", r.EventVersion), ErrUnsupportedVersion)
	}
	if r.EventSource != "" && !strings.HasSuffix(r.EventSource, ":s3") {
		return ObjectEvent{}, perr("eventSource", fmt.Sprintf("%q is not an S3 source", r.EventSource), nil)
	}
	if r.EventName == "" {
		return ObjectEvent{}, perr("eventName", "missing", nil)
	}
	if r.S3 == nil {
		return ObjectEvent{}, perr("s3", "missing", nil)
	}
	if r.S3.Bucket.Name == "" {
		return ObjectEvent{}, perr("s3.bucket.name", "missing", nil)
	}
	if r.S3.Object.Key == nil || *r.S3.Object.Key == "" {
		return ObjectEvent{}, perr("s3.object.key", "missing", nil)
	}
	key, err := DecodeS3Key(*r.S3.Object.Key)
	if err != nil {
		return ObjectEvent{}, perr("s3.object.key", fmt.Sprintf("cannot URL-decode %q", *r.S3.Object.Key), err)
	}
	ev := ObjectEvent{
		Bucket:    r.S3.Bucket.Name,
		Key:       key,
		ETag:      strings.Trim(r.S3.Object.ETag, `"`),
		VersionID: r.S3.Object.VersionID,
		Sequencer: r.S3.Object.Sequencer,
		EventName: r.EventName,
		Region:    r.AWSRegion,
		Source:    r.EventSource,
	}
	if s := r.S3.Object.Size.String(); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return ObjectEvent{}, perr("s3.object.size", fmt.Sprintf("%q is not a byte count", s), err)
		}
		ev.Size = n
	}
	if r.EventTime != "" {
		t, err := time.Parse(time.RFC3339Nano, r.EventTime)
		if err != nil {
			return ObjectEvent{}, perr("eventTime", fmt.Sprintf("%q is not an RFC 3339 time", r.EventTime), err)
		}
		ev.EventTime = t
	}
	return ev, nil
}

// DecodeS3Key undoes the URL encoding of keys in event records: %XX escapes and '+' for space.
func DecodeS3Key(s string) (string, error) { return url.QueryUnescape(s) }

// EncodeS3Key URL-encodes a key the way S3 does in event records: form encoding ('+' for space,
// %XX for reserved and non-ASCII bytes) with '/' left as is. DecodeS3Key(EncodeS3Key(k)) == k.
func EncodeS3Key(key string) string {
	return strings.ReplaceAll(url.QueryEscape(key), "%2F", "/")
}

// CompareSequencer orders two sequencers of events on the same key (hex strings of possibly
// different lengths): -1 when a is older, 0 when equal, 1 when a is newer.
func CompareSequencer(a, b string) int {
	a, b = strings.ToUpper(a), strings.ToUpper(b)
	if len(a) < len(b) {
		a = strings.Repeat("0", len(b)-len(a)) + a
	} else if len(b) < len(a) {
		b = strings.Repeat("0", len(a)-len(b)) + b
	}
	return strings.Compare(a, b)
}
