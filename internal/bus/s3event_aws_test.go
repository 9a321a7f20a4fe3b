package bus

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The fixtures are in the formats AWS documents for the three ways S3 notifications reach an SQS
// queue: directly, wrapped in an SNS notification, and as EventBridge events.
func TestParseAWSDeliveryShapes(t *testing.T) {
	const plate = "incoming/plate été 2024/échantillon A1_"
	for _, tc := range []struct {
		file string
		want ObjectEvent
	}{
		{"aws_put_unicode.json", ObjectEvent{Bucket: "lab-plates", Key: plate + "red.png", Size: 262144,
			ETag: "0b7a45d2e1c4f0a3b6c5d4e3f2a1b0c9-2", VersionID: "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
			Sequencer: "0062E99A88DC407460", EventName: "ObjectCreated:CompleteMultipartUpload",
			EventTime: time.Date(2024, 3, 2, 8, 0, 1, 250e6, time.UTC), Region: "eu-west-1", Source: "aws:s3"}},
		{"sns_s3_put.json", ObjectEvent{Bucket: "lab-plates", Key: plate + "red.png", Size: 262144,
			ETag: "0b7a45d2e1c4f0a3b6c5d4e3f2a1b0c9-2", VersionID: "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
			Sequencer: "0062E99A88DC407460", EventName: "ObjectCreated:CompleteMultipartUpload",
			EventTime: time.Date(2024, 3, 2, 8, 0, 1, 250e6, time.UTC), Region: "eu-west-1", Source: "aws:s3"}},
		{"eventbridge_object_created.json", ObjectEvent{Bucket: "lab-plates", Key: plate + "green.png", Size: 262144,
			ETag: "b1946ac92492d2347c6235b4d2611184", VersionID: "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
			Sequencer: "00617F08299329D189", EventName: "ObjectCreated:Put",
			EventTime: time.Date(2024, 3, 2, 8, 0, 1, 0, time.UTC), Region: "eu-west-1", Source: "aws:s3"}},
		{"eventbridge_object_deleted.json", ObjectEvent{Bucket: "lab-plates", Key: plate + "green.png",
			ETag: "d41d8cd98f00b204e9800998ecf8427e", VersionID: "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF",
			Sequencer: "00617F0D0EA15E8D70", EventName: "ObjectRemoved:DeleteMarkerCreated",
			EventTime: time.Date(2024, 3, 2, 9, 0, 0, 0, time.UTC), Region: "eu-west-1", Source: "aws:s3"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			evs, err := ParseS3Events(readTestdata(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 {
				t.Fatalf("got %d events", len(evs))
			}
			got := evs[0]
			if !got.EventTime.Equal(tc.want.EventTime) {
				t.Fatalf("time %v, want %v", got.EventTime, tc.want.EventTime)
			}
			got.EventTime = tc.want.EventTime
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseIgnoredShapes(t *testing.T) {
	for _, f := range []string{"sns_test_event.json", "aws_test_event.json", "eventbridge_restore_completed.json"} {
		evs, err := ParseS3Events(readTestdata(t, f))
		if err != nil || evs == nil || len(evs) != 0 {
			t.Fatalf("%s: %v, %v: want no events and no error", f, evs, err)
		}
	}
}

func TestParseEventBridgeErrors(t *testing.T) {
	for _, tc := range []struct{ body, field string }{
		{`{"detail-type":"Object Created","source":"aws.ec2","detail":{}}`, "source"},
		{`{"detail-type":"Object Created","source":"aws.s3"}`, "detail"},
		{`{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{}}}`, "detail.object.key"},
		{`{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"%zz"}}}`, "detail.object.key"},
		{`{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"k","size":-1}}}`, "detail.object.size"},
		{`{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{},"object":{"key":"k"}}}`, "detail.bucket.name"},
	} {
		_, err := ParseS3Events([]byte(tc.body))
		var pe *S3EventError
		if !errors.As(err, &pe) || pe.Field != tc.field {
			t.Errorf("%s: err %v, want field %s", tc.body, err, tc.field)
		}
	}
}

func TestDedupID(t *testing.T) {
	direct, err := ParseS3Events(readTestdata(t, "aws_put_unicode.json"))
	if err != nil {
		t.Fatal(err)
	}
	sns, err := ParseS3Events(readTestdata(t, "sns_s3_put.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The same notification through two paths: the same id.
	if direct[0].DedupID() != sns[0].DedupID() {
		t.Fatalf("%s != %s", direct[0].DedupID(), sns[0].DedupID())
	}
	e := direct[0]
	other := e
	other.VersionID, other.Sequencer = "v2", "0062E99A88DC407470"
	unversioned := e
	unversioned.VersionID = ""
	removed := e
	removed.EventName = "ObjectRemoved:Delete"
	ids := map[string]bool{}
	for _, x := range []ObjectEvent{e, other, unversioned, removed} {
		ids[x.DedupID()] = true
	}
	if len(ids) != 4 {
		t.Fatalf("ids collide: %v", ids)
	}
	if !strings.Contains(unversioned.DedupID(), e.ETag) {
		t.Fatalf("unversioned id %s lacks the ETag", unversioned.DedupID())
	}
}
