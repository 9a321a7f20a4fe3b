package s3local

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Payload-hash values of x-amz-content-sha256 besides a hex SHA-256.
const (
	unsignedPayload             = "UNSIGNED-PAYLOAD"
	streamingSignedPayload      = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	streamingSignedTrailer      = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	streamingUnsignedTrailer    = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	sigV4Algorithm              = "AWS4-HMAC-SHA256"
	amzDateLayout               = "20060102T150405Z"
	emptySHA256                 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	maxClockSkew                = 15 * time.Minute
	maxPresignExpiry            = 7 * 24 * time.Hour
	headerContentSHA256         = "X-Amz-Content-Sha256"
	headerDecodedContentLength  = "X-Amz-Decoded-Content-Length"
	headerAmzDate               = "X-Amz-Date"
	queryAlgorithm              = "X-Amz-Algorithm"
	querySignature              = "X-Amz-Signature"
	queryCredential             = "X-Amz-Credential"
	querySignedHeaders          = "X-Amz-SignedHeaders"
	queryExpires                = "X-Amz-Expires"
	queryDate                   = "X-Amz-Date"
	authorizationHeaderPrefixV4 = sigV4Algorithm + " "
)

// auth is the outcome of verifying a request's Signature V4.
type auth struct {
	accessKey   string
	payloadHash string // x-amz-content-sha256 (or UNSIGNED-PAYLOAD for presigned URLs)
	// For verifying aws-chunked signatures.
	signature  string
	signingKey []byte
	amzDate    string
	scope      string
}

// awsURIEncode percent-encodes every byte except the unreserved characters A-Z a-z 0-9 - _ . ~
// (and '/' when keepSlash), as Signature V4 requires.
func awsURIEncode(s string, keepSlash bool) string {
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || (keepSlash && c == '/') {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&15])
		}
	}
	return b.String()
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

func sha256Hex(data string) string {
	s := sha256.Sum256([]byte(data))
	return hex.EncodeToString(s[:])
}

func signingKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

// canonicalQuery sorts and re-encodes the raw query string, leaving out X-Amz-Signature.
func canonicalQuery(raw string) string {
	type kv struct{ k, v string }
	var pairs []kv
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		if k == querySignature {
			continue
		}
		pairs = append(pairs, kv{awsURIEncode(k, false), awsURIEncode(v, false)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k + "=" + p.v)
	}
	return b.String()
}

func canonicalHeaderValue(r *http.Request, name string) (string, bool) {
	switch name {
	case "host":
		return r.Host, r.Host != ""
	case "content-length":
		if v := r.Header.Get("Content-Length"); v != "" {
			return v, true
		}
		if r.ContentLength >= 0 {
			return strconv.FormatInt(r.ContentLength, 10), true
		}
		return "", false
	case "transfer-encoding":
		if len(r.TransferEncoding) > 0 {
			return strings.Join(r.TransferEncoding, ","), true
		}
	}
	vals := r.Header.Values(name)
	if len(vals) == 0 {
		return "", false
	}
	for i, v := range vals {
		vals[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(vals, ","), true
}

// stringToSign builds the canonical request for one candidate canonical URI and hashes it.
func stringToSign(r *http.Request, canonURI string, signed []string, payloadHash, amzDate, scope string) (string, *APIError) {
	var ch strings.Builder
	for _, h := range signed {
		v, ok := canonicalHeaderValue(r, h)
		if !ok {
			return "", errSignature("signed header %q is missing from the request", h)
		}
		ch.WriteString(h + ":" + v + "\n")
	}
	creq := r.Method + "\n" + canonURI + "\n" + canonicalQuery(r.URL.RawQuery) + "\n" + ch.String() + "\n" + strings.Join(signed, ";") + "\n" + payloadHash
	return sigV4Algorithm + "\n" + amzDate + "\n" + scope + "\n" + sha256Hex(creq), nil
}

// canonicalURIs are the canonical URIs a client may have signed: the AWS encoding of the decoded
// path (what the SDKs do) and the path exactly as sent.
func canonicalURIs(r *http.Request) []string {
	a := awsURIEncode(r.URL.Path, true)
	if a == "" {
		a = "/"
	}
	raw := r.RequestURI
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if raw == "" || raw == a || !strings.HasPrefix(raw, "/") {
		return []string{a}
	}
	return []string{a, raw}
}

// authenticate verifies the Signature V4 of r (Authorization header or presigned query).
func (s *Server) authenticate(r *http.Request) (*auth, *APIError) {
	q := r.URL.Query()
	authz := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(authz, authorizationHeaderPrefixV4):
		return s.authHeader(r, authz)
	case q.Get(queryAlgorithm) != "":
		return s.authPresigned(r, q)
	case strings.HasPrefix(authz, "AWS "), q.Get("AWSAccessKeyId") != "" && q.Get("Signature") != "":
		if !s.opts.AllowSigV2 {
			return nil, apiErr("AccessDenied", http.StatusForbidden, "AWS Signature Version 2 is not accepted (it signs no payload hash); sign with Signature Version 4, or enable s3local.allow_sigv2 for old clients.")
		}
		if strings.HasPrefix(authz, "AWS ") {
			return s.authV2Header(r, authz)
		}
		return s.authV2Query(r, q)
	case authz != "":
		return nil, errInvalidArgument("unsupported Authorization scheme (only %s is accepted)", sigV4Algorithm)
	}
	if s.opts.AllowAnonymous {
		return &auth{payloadHash: r.Header.Get(headerContentSHA256)}, nil
	}
	return nil, errAccessDenied("Access Denied: anonymous requests are not allowed")
}

type credentialScope struct {
	accessKey, date, region, service string
}

func parseCredential(v string) (credentialScope, *APIError) {
	parts := strings.Split(v, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" {
		return credentialScope{}, apiErr("AuthorizationHeaderMalformed", http.StatusBadRequest, "credential %q is not <key>/<date>/<region>/s3/aws4_request", v)
	}
	if parts[3] != "s3" {
		return credentialScope{}, apiErr("AuthorizationHeaderMalformed", http.StatusBadRequest, "credential service %q is not s3", parts[3])
	}
	return credentialScope{parts[0], parts[1], parts[2], parts[3]}, nil
}

func (c credentialScope) scope() string {
	return c.date + "/" + c.region + "/" + c.service + "/aws4_request"
}

func (s *Server) authHeader(r *http.Request, authz string) (*auth, *APIError) {
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(authz, authorizationHeaderPrefixV4), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, apiErr("AuthorizationHeaderMalformed", http.StatusBadRequest, "malformed Authorization component %q", part)
		}
		fields[k] = v
	}
	cred, e := parseCredential(fields["Credential"])
	if e != nil {
		return nil, e
	}
	if fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return nil, apiErr("AuthorizationHeaderMalformed", http.StatusBadRequest, "Authorization header lacks SignedHeaders or Signature")
	}
	amzDate := r.Header.Get(headerAmzDate)
	var t time.Time
	var err error
	if amzDate != "" {
		t, err = time.Parse(amzDateLayout, amzDate)
	} else if d := r.Header.Get("Date"); d != "" {
		t, err = parseHTTPDate(d)
		amzDate = t.UTC().Format(amzDateLayout)
	} else {
		return nil, errAccessDenied("AWS authentication requires a valid Date or x-amz-date header")
	}
	if err != nil {
		return nil, errAccessDenied("unparseable request date: %v", err)
	}
	if skew := s.now().Sub(t); skew > maxClockSkew || skew < -maxClockSkew {
		return nil, apiErr("RequestTimeTooSkewed", http.StatusForbidden, "The difference between the request time (%s) and the server's time is too large.", amzDate)
	}
	if !strings.HasPrefix(amzDate, cred.date) {
		return nil, errSignature("credential date %s does not match the request date %s", cred.date, amzDate)
	}
	payload := r.Header.Get(headerContentSHA256)
	if payload == "" {
		return nil, errInvalidRequest("Missing required header for this request: x-amz-content-sha256")
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	return s.verify(r, cred, signed, payload, amzDate, fields["Signature"])
}

func (s *Server) authPresigned(r *http.Request, q url.Values) (*auth, *APIError) {
	if q.Get(queryAlgorithm) != sigV4Algorithm {
		return nil, errInvalidArgument("unsupported %s %q", queryAlgorithm, q.Get(queryAlgorithm))
	}
	cred, e := parseCredential(q.Get(queryCredential))
	if e != nil {
		return nil, e
	}
	amzDate := q.Get(queryDate)
	t, err := time.Parse(amzDateLayout, amzDate)
	if err != nil {
		return nil, errAccessDenied("unparseable %s %q", queryDate, amzDate)
	}
	exp, err := strconv.Atoi(q.Get(queryExpires))
	if err != nil || exp <= 0 || time.Duration(exp)*time.Second > maxPresignExpiry {
		return nil, errInvalidArgument("%s must be 1..%d seconds", queryExpires, int(maxPresignExpiry/time.Second))
	}
	now := s.now()
	if now.Before(t.Add(-maxClockSkew)) {
		return nil, errAccessDenied("Request is not valid yet")
	}
	if now.After(t.Add(time.Duration(exp) * time.Second)) {
		return nil, errAccessDenied("Request has expired")
	}
	if !strings.HasPrefix(amzDate, cred.date) {
		return nil, errSignature("credential date %s does not match %s", cred.date, amzDate)
	}
	payload := r.Header.Get(headerContentSHA256)
	if payload == "" {
		payload = unsignedPayload
	}
	return s.verify(r, cred, strings.Split(q.Get(querySignedHeaders), ";"), payload, amzDate, q.Get(querySignature))
}

func (s *Server) verify(r *http.Request, cred credentialScope, signed []string, payload, amzDate, sig string) (*auth, *APIError) {
	if cred.accessKey != s.opts.AccessKey {
		return nil, apiErr("InvalidAccessKeyId", http.StatusForbidden, "The AWS Access Key Id you provided does not exist in our records.")
	}
	hasHost := false
	for i, h := range signed {
		if h != strings.ToLower(h) || h == "" || (i > 0 && signed[i-1] >= h) {
			return nil, apiErr("AuthorizationHeaderMalformed", http.StatusBadRequest, "SignedHeaders must be lower-case and sorted")
		}
		hasHost = hasHost || h == "host"
	}
	if !hasHost {
		return nil, errAccessDenied("the host header must be signed")
	}
	key := signingKey(s.opts.SecretKey, cred.date, cred.region, cred.service)
	scope := cred.scope()
	for _, uri := range canonicalURIs(r) {
		sts, e := stringToSign(r, uri, signed, payload, amzDate, scope)
		if e != nil {
			return nil, e
		}
		want := hex.EncodeToString(hmacSHA256(key, sts))
		if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(sig))) == 1 {
			return &auth{accessKey: cred.accessKey, payloadHash: payload, signature: want, signingKey: key, amzDate: amzDate, scope: scope}, nil
		}
	}
	return nil, errSignature("The request signature we calculated does not match the signature you provided. Check your key and signing method.")
}
