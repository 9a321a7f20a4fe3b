package bus

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseAWS(t *testing.T) {
	evs, err := ParseS3Events(readTestdata(t, "aws_put.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("got %d events", len(evs))
	}
	e := evs[0]
	want := ObjectEvent{
		Bucket: "plates", Key: "incoming/plate 1/00070df0-bbc3-11e8-b2bc-ac1f6b6435d0_green.png", Size: 1024,
		ETag: "d41d8cd98f00b204e9800998ecf8427e", VersionID: "096fKKXTRTtl3on89fVO.nfljtsv6qko",
		Sequencer: "0055AED6DCD90281E5", EventName: "ObjectCreated:Put",
		EventTime: time.Date(2024, 3, 1, 12, 34, 56, 789e6, time.UTC), Region: "us-west-2", Source: "aws:s3",
	}
	if !e.EventTime.Equal(want.EventTime) {
		t.Fatalf("time %v want %v", e.EventTime, want.EventTime)
	}
	e.EventTime = want.EventTime
	if e != want {
		t.Fatalf("got  %+v\nwant %+v", e, want)
	}
	if !e.IsCreate() || e.IsRemove() || e.Type() != "ObjectCreated:Put" {
		t.Fatalf("IsCreate=%v IsRemove=%v Type=%s", e.IsCreate(), e.IsRemove(), e.Type())
	}
}

func TestParseMinIONATS(t *testing.T) {
	evs, err := ParseS3Events(readTestdata(t, "minio_nats_put.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("got %d events", len(evs))
	}
	e := evs[0]
	if e.Bucket != "plates" || e.Key != "incoming/plate 1/X_blue.png" || e.Size != 262144 ||
		e.EventName != "s3:ObjectCreated:Put" || e.Sequencer != "17CD2E1A0C19C5E4" || e.Source != "minio:s3" ||
		e.ETag != "5fc7298143efe1276d39a3466d4e255f" {
		t.Fatalf("got %+v", e)
	}
	if !e.IsCreate() || e.Type() != "ObjectCreated:Put" {
		t.Fatal("MinIO put is not a create")
	}
	if e.EventTime.UnixMilli() != time.Date(2024, 5, 7, 9, 27, 27, 416e6, time.UTC).UnixMilli() {
		t.Fatalf("time %v", e.EventTime)
	}

	del, err := ParseS3Events(readTestdata(t, "minio_delete.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(del) != 1 || del[0].IsCreate() || !del[0].IsRemove() || del[0].Key != "incoming/plate 1/X_blue.png" || del[0].Size != 0 {
		t.Fatalf("delete: %+v", del)
	}
}

func TestParseTestEventAndSNS(t *testing.T) {
	evs, err := ParseS3Events(readTestdata(t, "aws_test_event.json"))
	if err != nil || evs == nil || len(evs) != 0 {
		t.Fatalf("test event: %v %v", evs, err)
	}
	inner := readTestdata(t, "aws_put.json")
	sns, _ := json.Marshal(map[string]string{"Type": "Notification", "MessageId": "m1", "TopicArn": "arn:aws:sns:us-west-2:1:t", "Message": string(inner)})
	evs, err = ParseS3Events(sns)
	if err != nil || len(evs) != 1 || evs[0].Key != "incoming/plate 1/00070df0-bbc3-11e8-b2bc-ac1f6b6435d0_green.png" {
		t.Fatalf("sns: %v %v", evs, err)
	}
	bad, _ := json.Marshal(map[string]string{"Type": "Notification", "Message": "{not json"})
	_, err = ParseS3Events(bad)
	var pe *S3EventError
	if !errors.As(err, &pe) || pe.Field != "Message" {
		t.Fatalf("bad sns: %v", err)
	}
}

func TestParseWrapperWithoutRecords(t *testing.T) {
	evs, err := ParseS3Events([]byte(`{"EventName":"s3:ObjectCreated:Put","Key":"plates/a b/c.png"}`))
	if err != nil || len(evs) != 1 || evs[0].Bucket != "plates" || evs[0].Key != "a b/c.png" || !evs[0].IsCreate() {
		t.Fatalf("%v %v", evs, err)
	}
	if _, err := ParseS3Events([]byte(`{"EventName":"s3:ObjectCreated:Put","Key":"plates"}`)); err == nil {
		t.Fatal("Key without bucket/ accepted")
	}
}

func recordJSON(key string, extra string) string {
	return `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2024-01-01T00:00:00.000Z","eventName":"ObjectCreated:Put",` +
		`"s3":{"bucket":{"name":"b"},"object":{"key":` + key + `,"size":5` + extra + `}}}]}`
}

func TestOddKeys(t *testing.T) {
	cases := []struct{ raw, want string }{
		{`"a+b"`, "a b"},
		{`"a%2Bb"`, "a+b"},
		{`"100%25+done.png"`, "100% done.png"},
		{`"caf%C3%A9/%E7%B4%B0%E8%83%9E_red.png"`, "café/細胞_red.png"},
		{`"plain/key.png"`, "plain/key.png"},
		{`"a%2Fb%2Fc"`, "a/b/c"},
		{`"sp%20ace"`, "sp ace"},
		{`"q%3Fx%3Dy%26z"`, "q?x=y&z"},
	}
	for _, c := range cases {
		evs, err := ParseS3Events([]byte(recordJSON(c.raw, "")))
		if err != nil {
			t.Fatalf("%s: %v", c.raw, err)
		}
		if evs[0].Key != c.want {
			t.Errorf("%s -> %q, want %q", c.raw, evs[0].Key, c.want)
		}
	}
}

func TestMalformed(t *testing.T) {
	cases := []struct {
		name, body string
		record     int
		field      string
	}{
		{"empty", ``, -1, ""},
		{"not json", `{"Records":[`, -1, ""},
		{"trailing", `{"Records":[]} {}`, -1, ""},
		{"array", `[1,2]`, -1, ""},
		{"no records", `{"foo":1}`, -1, "Records"},
		{"records not array", `{"Records":{}}`, -1, ""},
		{"bad percent", recordJSON(`"a%zzb"`, ""), 0, "s3.object.key"},
		{"truncated percent", recordJSON(`"a%2"`, ""), 0, "s3.object.key"},
		{"missing key", `{"Records":[{"eventVersion":"2.1","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{}}}]}`, 0, "s3.object.key"},
		{"missing bucket", `{"Records":[{"eventVersion":"2.1","eventName":"ObjectCreated:Put","s3":{"bucket":{},"object":{"key":"k"}}}]}`, 0, "s3.bucket.name"},
		{"missing s3", `{"Records":[{"eventVersion":"2.1","eventName":"ObjectCreated:Put"}]}`, 0, "s3"},
		{"missing name", `{"Records":[{"eventVersion":"2.1","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, 0, "eventName"},
		{"version 1", `{"Records":[{"eventVersion":"1.0","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, 0, "eventVersion"},
		{"not s3", `{"Records":[{"eventVersion":"2.1","eventSource":"aws:sqs","eventName":"x","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, 0, "eventSource"},
		{"negative size", recordJSON(`"k"`, "")[:0] + `{"Records":[{"eventVersion":"2.1","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":-4}}}]}`, 0, "s3.object.size"},
		{"float size", `{"Records":[{"eventVersion":"2.1","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":1.5}}}]}`, 0, "s3.object.size"},
		{"word size", `{"Records":[{"eventVersion":"2.1","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":"big"}}}]}`, -1, ""},
		{"bad time", `{"Records":[{"eventVersion":"2.1","eventTime":"yesterday","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, 0, "eventTime"},
		{"second record bad", `{"Records":[` + strings.TrimSuffix(strings.TrimPrefix(recordJSON(`"k"`, ""), `{"Records":[`), `]}`) + `,{"eventVersion":"3.0"}]}`, 1, "eventVersion"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs, err := ParseS3Events([]byte(c.body))
			var pe *S3EventError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, %v; want *S3EventError", evs, err)
			}
			if pe.Record != c.record || pe.Field != c.field {
				t.Fatalf("error %q: record %d field %q, want %d %q", err, pe.Record, pe.Field, c.record, c.field)
			}
		})
	}
	_, err := ParseS3Events([]byte(`{"Records":[{"eventVersion":"1.0","eventName":"x","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`))
	if !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("version error does not wrap ErrUnsupportedVersion: %v", err)
	}
}

func TestQuotedSize(t *testing.T) {
	// Some producers quote numbers; a quoted integer is still a size.
	evs, err := ParseS3Events([]byte(`{"Records":[{"eventVersion":"2.1","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":"12"}}}]}`))
	if err != nil || evs[0].Size != 12 {
		t.Fatalf("%v %v", evs, err)
	}
}

func TestEmptyRecords(t *testing.T) {
	evs, err := ParseS3Events([]byte(`{"Records":[]}`))
	if err != nil || len(evs) != 0 {
		t.Fatalf("%v %v", evs, err)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	keys := []string{"incoming/plate 1/X_blue.png", "a+b/c%d.png", "café/細胞_red.png", "sp  two/ q?x=1&y#z", "~!*'()_.-"}
	at := time.Date(2025, 2, 3, 4, 5, 6, 789_000_000, time.UTC)
	var in []ObjectEvent
	for i, k := range keys {
		in = append(in, ObjectEvent{Bucket: "plates", Key: k, Size: int64(100 + i), ETag: `"0123456789abcdef0123456789abcdef"`,
			Sequencer: "00000000000000000A", EventName: ObjectCreatedPut, EventTime: at})
	}
	in[2].EventName = ObjectCreatedCompleteMultipartUpload
	data, err := EncodeS3Events(S3EventOptions{Region: "local-1", PrincipalID: "hpa", SourceIP: "127.0.0.1", RequestID: "R1"}, in...)
	if err != nil {
		t.Fatal(err)
	}
	// Wire shape: AWS field names, version 2.1, encoded keys ('+' for space, '/' kept).
	var raw struct {
		Records []map[string]any
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	r0 := raw.Records[0]
	if r0["eventVersion"] != "2.1" || r0["eventSource"] != "aws:s3" || r0["awsRegion"] != "local-1" || r0["eventTime"] != "2025-02-03T04:05:06.789Z" || r0["eventName"] != "ObjectCreated:Put" {
		t.Fatalf("record: %v", r0)
	}
	obj := r0["s3"].(map[string]any)["object"].(map[string]any)
	if obj["key"] != "incoming/plate+1/X_blue.png" || obj["eTag"] != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("object: %v", obj)
	}
	if got := raw.Records[1]["s3"].(map[string]any)["object"].(map[string]any)["key"]; got != "a%2Bb/c%25d.png" {
		t.Fatalf("key 1 encoded as %v", got)
	}
	out, err := ParseS3Events(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d events back", len(out))
	}
	for i := range in {
		want := in[i]
		want.ETag = strings.Trim(want.ETag, `"`)
		want.Region = "local-1"
		want.Source = "aws:s3"
		got := out[i]
		if !got.EventTime.Equal(want.EventTime) {
			t.Fatalf("time %v", got.EventTime)
		}
		got.EventTime = want.EventTime
		if got != want {
			t.Errorf("round trip %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	ok := ObjectEvent{Bucket: "b", Key: "k", EventName: ObjectCreatedPut}
	for name, ev := range map[string]ObjectEvent{
		"no bucket": {Key: "k", EventName: ObjectCreatedPut},
		"no key":    {Bucket: "b", EventName: ObjectCreatedPut},
		"no name":   {Bucket: "b", Key: "k"},
		"neg size":  {Bucket: "b", Key: "k", EventName: ObjectCreatedPut, Size: -1},
	} {
		_, err := EncodeS3Events(S3EventOptions{}, ok, ev)
		var ee *S3EncodeError
		if !errors.As(err, &ee) || ee.Index != 1 {
			t.Errorf("%s: %v", name, err)
		}
	}
	// MinIO-style names are written the AWS way.
	data, err := EncodeS3Events(S3EventOptions{}, ObjectEvent{Bucket: "b", Key: "k", EventName: "s3:ObjectCreated:Copy"})
	if err != nil || !strings.Contains(string(data), `"eventName":"ObjectCreated:Copy"`) {
		t.Fatalf("%s %v", data, err)
	}
}

func TestCompareSequencer(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"0055AED6DCD90281E5", "0055AED6DCD90281E6", -1},
		{"55AED6DCD90281E5", "0055AED6DCD90281E5", 0},
		{"0155AED6DCD90281E5", "FF", 1},
		{"ab", "AB", 0},
	}
	for _, c := range cases {
		if got := CompareSequencer(c.a, c.b); got != c.want {
			t.Errorf("Compare(%s,%s)=%d want %d", c.a, c.b, got, c.want)
		}
	}
}

// FuzzParse: Parse never panics, and what it accepts has buckets, keys and names. Seeds: AWS (direct,
// SNS-wrapped, EventBridge), MinIO.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"aws_put.json", "minio_nats_put.json", "minio_delete.json", "aws_test_event.json",
		"aws_put_unicode.json", "sns_s3_put.json", "sns_test_event.json", "eventbridge_object_created.json",
		"eventbridge_object_deleted.json", "eventbridge_restore_completed.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(recordJSON(`"a%zz"`, "")))
	f.Add([]byte(`{"Type":"Notification","Message":"{\"Records\":[]}"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := ParseS3Events(data)
		if err != nil {
			var pe *S3EventError
			if !errors.As(err, &pe) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		for _, e := range evs {
			if e.Bucket == "" || e.Key == "" || e.EventName == "" || e.Size < 0 {
				t.Fatalf("accepted incomplete event %+v", e)
			}
			// Re-encoding and parsing again gives the same key.
			out, err := EncodeS3Events(S3EventOptions{}, e)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseS3Events(out)
			if err != nil || back[0].Key != e.Key || back[0].Bucket != e.Bucket {
				t.Fatalf("round trip of %+v: %v %v", e, back, err)
			}
		}
	})
}

func BenchmarkParseMinIO(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "minio_nats_put.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		if _, err := ParseS3Events(data); err != nil {
			b.Fatal(err)
		}
	}
}
