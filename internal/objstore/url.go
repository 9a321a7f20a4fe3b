package objstore

import (
	"fmt"
	"net/url"
	"strings"
)

// URL is an s3://bucket/prefix location.
type URL struct {
	Bucket, Prefix string // Prefix without leading slash; "" or ending in "/"
}

func (u URL) String() string { return "s3://" + u.Bucket + "/" + u.Prefix }

// IsURL reports whether s names an S3 location.
func IsURL(s string) bool { return strings.HasPrefix(s, "s3://") }

// ParseURL parses s3://bucket[/prefix]; the prefix is normalized to end in "/".
func ParseURL(s string) (URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return URL{}, fmt.Errorf("%q is not an s3://bucket/prefix URL", s)
	}
	p := strings.TrimPrefix(u.Path, "/")
	if p != "" && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return URL{Bucket: u.Host, Prefix: p}, nil
}
