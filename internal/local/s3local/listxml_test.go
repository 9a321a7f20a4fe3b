package s3local

import (
	"bytes"
	"encoding/xml"
	"testing"
)

// The hand-written ListObjectsV2 response is the bytes encoding/xml gives for the same struct,
// with keys that need escaping (quotes, markup, control characters, unicode, invalid UTF-8).
func TestListV2XMLMatchesEncoder(t *testing.T) {
	keys := []string{"incoming/p1/a_red.png", `we"ird'<&>.png`, "tab\tnew\nline\rcr.png", "ünï cödé ✓.png",
		"bad\xffutf8.png", "ctl\x01\x1f.png", "", "sp ace+plus%25"}
	for _, trunc := range []bool{false, true} {
		r := listV2{NS: s3XMLNS, Name: "bench", Prefix: "inc<o>ming/", MaxKeys: 1000, KeyCount: len(keys) + 2,
			IsTruncated: trunc, StartAfter: "a&b", EncodingType: ""}
		if trunc {
			r.Delimiter, r.ContinuationToken, r.NextContinuationToken, r.EncodingType = "/", "6162", "6364", "url"
		}
		for i, k := range keys {
			r.Contents = append(r.Contents, contentXML{Key: k, LastModified: "2026-12-01T17:00:00.000Z",
				ETag: `"0123abcd"`, Size: int64(i * 1000), StorageClass: "STANDARD"})
		}
		r.CommonPrefixes = []prefixXML{{"p/"}, {"q\"&/"}}
		var want bytes.Buffer
		want.WriteString(xml.Header)
		if err := xml.NewEncoder(&want).Encode(r); err != nil {
			t.Fatal(err)
		}
		if got := appendListV2(nil, &r); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("truncated=%v:\n got %s\nwant %s", trunc, got, want.Bytes())
		}
	}
	// An empty listing.
	r := listV2{NS: s3XMLNS, Name: "b", MaxKeys: 0}
	var want bytes.Buffer
	want.WriteString(xml.Header)
	_ = xml.NewEncoder(&want).Encode(r)
	if got := appendListV2(nil, &r); !bytes.Equal(got, want.Bytes()) {
		t.Errorf("empty:\n got %s\nwant %s", got, want.Bytes())
	}
}
