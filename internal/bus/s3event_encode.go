package bus

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Event names our S3 server emits (Amazon spelling, without MinIO's "s3:" prefix).
const (
	ObjectCreatedPut                     = "ObjectCreated:Put"
	ObjectCreatedPost                    = "ObjectCreated:Post"
	ObjectCreatedCopy                    = "ObjectCreated:Copy"
	ObjectCreatedCompleteMultipartUpload = "ObjectCreated:CompleteMultipartUpload"
	ObjectRemovedDelete                  = "ObjectRemoved:Delete"
)

// S3EventOptions fills the record fields that do not come from the ObjectEvent.
type S3EventOptions struct {
	EventVersion    string // default "2.1"
	EventSource     string // default "aws:s3"
	Region          string // awsRegion; also the ObjectEvent's Region when that is empty
	PrincipalID     string // userIdentity.principalId and the bucket owner
	SourceIP        string // requestParameters.sourceIPAddress
	RequestID       string // responseElements.x-amz-request-id
	HostID          string // responseElements.x-amz-id-2
	ConfigurationID string // s3.configurationId
}

// S3EncodeError is returned by Encode for an event that cannot be written.
type S3EncodeError struct {
	Index  int
	Bucket string
	Key    string
	Reason string
}

func (e *S3EncodeError) Error() string {
	return fmt.Sprintf("s3 event: encode event %d (s3://%s/%s): %s", e.Index, e.Bucket, e.Key, e.Reason)
}

// S3EventTimeLayout is the eventTime format of Amazon S3 records (UTC, milliseconds).
const S3EventTimeLayout = "2006-01-02T15:04:05.000Z"

type outRecord struct {
	EventVersion      string            `json:"eventVersion"`
	EventSource       string            `json:"eventSource"`
	AWSRegion         string            `json:"awsRegion"`
	EventTime         string            `json:"eventTime"`
	EventName         string            `json:"eventName"`
	UserIdentity      principal         `json:"userIdentity"`
	RequestParameters map[string]string `json:"requestParameters"`
	ResponseElements  map[string]string `json:"responseElements"`
	S3                outS3             `json:"s3"`
}

type principal struct {
	PrincipalID string `json:"principalId"`
}

type outS3 struct {
	SchemaVersion   string `json:"s3SchemaVersion"`
	ConfigurationID string `json:"configurationId"`
	Bucket          struct {
		Name          string    `json:"name"`
		OwnerIdentity principal `json:"ownerIdentity"`
		ARN           string    `json:"arn"`
	} `json:"bucket"`
	Object struct {
		Key       string `json:"key"`
		Size      int64  `json:"size"`
		ETag      string `json:"eTag"`
		VersionID string `json:"versionId,omitempty"`
		Sequencer string `json:"sequencer"`
	} `json:"object"`
}

// Encode writes events as one Amazon S3 notification message ({"Records":[...]}), keys
// URL-encoded as S3 does. Each event needs a bucket, a key and an event name; a zero EventTime is
// written as the current time.
func EncodeS3Events(o S3EventOptions, evs ...ObjectEvent) ([]byte, error) {
	if o.EventVersion == "" {
		o.EventVersion = "2.1"
	}
	if o.EventSource == "" {
		o.EventSource = "aws:s3"
	}
	recs := make([]outRecord, 0, len(evs))
	for i, ev := range evs {
		bad := func(reason string) error {
			return &S3EncodeError{Index: i, Bucket: ev.Bucket, Key: ev.Key, Reason: reason}
		}
		switch {
		case ev.Bucket == "":
			return nil, bad("empty bucket")
		case ev.Key == "":
			return nil, bad("empty key")
		case ev.EventName == "":
			return nil, bad("empty event name")
		case ev.Size < 0:
			return nil, bad("negative size")
		}
		t := ev.EventTime
		if t.IsZero() {
			t = time.Now()
		}
		region := ev.Region
		if region == "" {
			region = o.Region
		}
		r := outRecord{
			EventVersion:      o.EventVersion,
			EventSource:       o.EventSource,
			AWSRegion:         region,
			EventTime:         t.UTC().Format(S3EventTimeLayout),
			EventName:         strings.TrimPrefix(ev.EventName, "s3:"),
			UserIdentity:      principal{o.PrincipalID},
			RequestParameters: map[string]string{"sourceIPAddress": o.SourceIP},
			ResponseElements:  map[string]string{"x-amz-request-id": o.RequestID, "x-amz-id-2": o.HostID},
		}
		r.S3.SchemaVersion = "1.0"
		r.S3.ConfigurationID = o.ConfigurationID
		r.S3.Bucket.Name = ev.Bucket
		r.S3.Bucket.OwnerIdentity = principal{o.PrincipalID}
		r.S3.Bucket.ARN = "arn:aws:s3:::" + ev.Bucket
		r.S3.Object.Key = EncodeS3Key(ev.Key)
		r.S3.Object.Size = ev.Size
		r.S3.Object.ETag = strings.Trim(ev.ETag, `"`)
		r.S3.Object.VersionID = ev.VersionID
		r.S3.Object.Sequencer = ev.Sequencer
		recs = append(recs, r)
	}
	return json.Marshal(struct {
		Records []outRecord `json:"Records"`
	}{recs})
}
