package s3local

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Signature Version 2 is still what boto3 and the aws cli (v1) put in presigned URLs by default
// ("?AWSAccessKeyId=...&Expires=...&Signature=..."); header auth ("Authorization: AWS key:sig")
// is accepted as well.

// sigV2Subresources are the query parameters that are part of the V2 canonical resource.
var sigV2Subresources = map[string]bool{
	"acl": true, "cors": true, "delete": true, "lifecycle": true, "location": true, "logging": true,
	"notification": true, "partNumber": true, "policy": true, "requestPayment": true, "restore": true,
	"tagging": true, "torrent": true, "uploadId": true, "uploads": true, "versionId": true,
	"versioning": true, "versions": true, "website": true,
	"response-cache-control": true, "response-content-disposition": true, "response-content-encoding": true,
	"response-content-language": true, "response-content-type": true, "response-expires": true,
}

func sigV2StringToSign(r *http.Request, resourcePath, dateOrExpires string) string {
	var amz []string
	for name, vals := range r.Header {
		l := strings.ToLower(name)
		if strings.HasPrefix(l, "x-amz-") {
			amz = append(amz, l+":"+strings.Join(vals, ","))
		}
	}
	sort.Strings(amz)
	var sub []string
	for k, vs := range r.URL.Query() {
		if !sigV2Subresources[k] {
			continue
		}
		for _, v := range vs {
			if v == "" {
				sub = append(sub, k)
			} else {
				sub = append(sub, k+"="+v)
			}
		}
	}
	sort.Strings(sub)
	res := resourcePath
	if len(sub) > 0 {
		res += "?" + strings.Join(sub, "&")
	}
	var b strings.Builder
	b.WriteString(r.Method + "\n" + r.Header.Get("Content-Md5") + "\n" + r.Header.Get("Content-Type") + "\n" + dateOrExpires + "\n")
	for _, h := range amz {
		b.WriteString(h + "\n")
	}
	b.WriteString(res)
	return b.String()
}

func (s *Server) verifyV2(r *http.Request, accessKey, sig, dateOrExpires string) (*auth, *APIError) {
	if accessKey != s.opts.AccessKey {
		return nil, apiErr("InvalidAccessKeyId", http.StatusForbidden, "The AWS Access Key Id you provided does not exist in our records.")
	}
	for _, path := range canonicalURIs(r) {
		m := hmac.New(sha1.New, []byte(s.opts.SecretKey))
		m.Write([]byte(sigV2StringToSign(r, path, dateOrExpires)))
		want := base64.StdEncoding.EncodeToString(m.Sum(nil))
		if subtle.ConstantTimeCompare([]byte(want), []byte(sig)) == 1 {
			return &auth{accessKey: accessKey, payloadHash: unsignedPayload}, nil
		}
	}
	return nil, errSignature("The request signature we calculated does not match the signature you provided. Check your key and signing method.")
}

func (s *Server) authV2Query(r *http.Request, q url.Values) (*auth, *APIError) {
	exp, err := strconv.ParseInt(q.Get("Expires"), 10, 64)
	if err != nil {
		return nil, errAccessDenied("Expires %q is not a Unix time", q.Get("Expires"))
	}
	if s.now().Unix() > exp {
		return nil, errAccessDenied("Request has expired")
	}
	if exp > s.now().Add(maxPresignV2).Unix() {
		return nil, errAccessDenied("Expires %d is more than %s ahead: a presigned URL is valid for at most 7 days", exp, maxPresignV2)
	}
	return s.verifyV2(r, q.Get("AWSAccessKeyId"), q.Get("Signature"), q.Get("Expires"))
}

func (s *Server) authV2Header(r *http.Request, authz string) (*auth, *APIError) {
	ak, sig, ok := strings.Cut(strings.TrimPrefix(authz, "AWS "), ":")
	if !ok {
		return nil, errInvalidArgument("malformed Authorization header")
	}
	date := r.Header.Get("Date")
	t, err := parseHTTPDate(date)
	if v := r.Header.Get("X-Amz-Date"); v != "" {
		date = ""
		t, err = parseHTTPDate(v)
	}
	if err != nil {
		return nil, errAccessDenied("AWS authentication requires a valid Date or x-amz-date header")
	}
	if skew := s.now().Sub(t); skew > maxClockSkew || skew < -maxClockSkew {
		return nil, apiErr("RequestTimeTooSkewed", http.StatusForbidden, "The difference between the request time and the server's time is too large.")
	}
	return s.verifyV2(r, ak, sig, date)
}

// parseHTTPDate accepts the HTTP date formats and RFC 1123 with a numeric zone (used by the AWS
// examples and some clients).
func parseHTTPDate(v string) (time.Time, error) {
	if t, err := http.ParseTime(v); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC1123Z, v)
}
