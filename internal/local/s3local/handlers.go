package s3local

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hpa-plates/hpa/internal/bus"
)

const (
	s3XMLNS        = "http://s3.amazonaws.com/doc/2006-03-01/"
	xmlTimeLayout  = "2006-01-02T15:04:05.000Z"
	maxXMLBody     = 4 << 20
	maxListKeys    = 1000
	defaultCType   = "binary/octet-stream"
	metaHeaderPref = "X-Amz-Meta-"
)

// Sub-resources we recognise but do not implement (answered with NotImplemented).
var unsupportedSubresources = []string{
	"acl", "policy", "tagging", "lifecycle", "cors", "encryption", "object-lock", "notification",
	"replication", "website", "logging", "requestPayment", "accelerate", "ownershipControls",
	"publicAccessBlock", "retention", "legal-hold", "attributes", "torrent", "restore", "select",
	"analytics", "inventory", "metrics", "intelligent-tiering", "versions", "policyStatus",
}

type request struct {
	w      http.ResponseWriter
	r      *http.Request
	q      url.Values
	id     string
	auth   *auth
	bucket string
	key    string
}

func (rq *request) has(k string) bool { _, ok := rq.q[k]; return ok }

func (rq *request) sourceIP() string {
	host, _, err := net.SplitHostPort(rq.r.RemoteAddr)
	if err != nil {
		return rq.r.RemoteAddr
	}
	return host
}

// ServeHTTP implements the S3 REST API (path-style addressing).
// Every read of the body and write of the answer must make progress within Limits.BodyTimeout;
// beyond Limits.MaxRequests requests at once, the answer is 503 SlowDown.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w = &progressWriter{ResponseWriter: w, rc: rc, timeout: s.opts.BodyTimeout}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &progressReader{ReadCloser: r.Body, rc: rc, timeout: s.opts.BodyTimeout}
	}
	if !s.acquire() {
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Connection", "close")
		writeError(w, r, strings.ToUpper(newID(8)), apiErr("SlowDown", http.StatusServiceUnavailable, "Please reduce your request rate (more than %d requests at once).", s.opts.MaxRequests))
		return
	}
	defer s.release()
	rq := &request{w: w, r: r, q: r.URL.Query(), id: strings.ToUpper(newID(8))}
	w.Header().Set("X-Amz-Request-Id", rq.id)
	w.Header().Set("X-Amz-Id-2", s.hostID)
	w.Header().Set("Server", "s3local")
	if e := s.serve(rq); e != nil {
		if e.Status >= 500 {
			s.logf("%s %s: %v", r.Method, r.URL.Path, e)
		}
		if pr, ok := r.Body.(*progressReader); ok && !pr.failed {
			// Let the client finish sending a small body so it reads our answer.
			_, _ = io.CopyN(io.Discard, r.Body, 1<<20)
		}
		writeError(w, r, rq.id, e)
	}
}

func (s *Server) serve(rq *request) *APIError {
	a, e := s.authenticate(rq.r)
	if e != nil {
		return e
	}
	rq.auth = a
	path := strings.TrimPrefix(rq.r.URL.Path, "/")
	rq.bucket, rq.key, _ = strings.Cut(path, "/")
	m := rq.r.Method
	if rq.bucket == "" {
		if m == http.MethodGet {
			return s.listBuckets(rq)
		}
		return apiErr("MethodNotAllowed", http.StatusMethodNotAllowed, "The specified method is not allowed against this resource.")
	}
	for _, sub := range unsupportedSubresources {
		if rq.has(sub) {
			return errNotImplemented("the ?" + sub + " sub-resource")
		}
	}
	if rq.key == "" {
		return s.serveBucket(rq)
	}
	if e := ValidateKey(rq.key); e != nil {
		return e.at(rq.bucket, rq.key)
	}
	if !s.store.hasBucket(rq.bucket) {
		return errNoSuchBucket(rq.bucket)
	}
	switch m {
	case http.MethodPut:
		switch {
		case rq.has("uploadId") || rq.has("partNumber"):
			if rq.r.Header.Get("X-Amz-Copy-Source") != "" {
				return errNotImplemented("UploadPartCopy")
			}
			return s.uploadPart(rq)
		case rq.r.Header.Get("X-Amz-Copy-Source") != "":
			return s.copyObject(rq)
		}
		return s.putObject(rq)
	case http.MethodGet, http.MethodHead:
		if rq.has("uploadId") {
			return errNotImplemented("ListParts")
		}
		return s.getObject(rq)
	case http.MethodDelete:
		if rq.has("uploadId") {
			return s.abortMultipart(rq)
		}
		return s.deleteObject(rq)
	case http.MethodPost:
		switch {
		case rq.has("uploads"):
			return s.createMultipart(rq)
		case rq.has("uploadId"):
			return s.completeMultipart(rq)
		}
		return errNotImplemented("POST on an object")
	}
	return apiErr("MethodNotAllowed", http.StatusMethodNotAllowed, "The specified method is not allowed against this resource.")
}

func (s *Server) serveBucket(rq *request) *APIError {
	switch rq.r.Method {
	case http.MethodPut:
		if e := ValidateBucketName(rq.bucket); e != nil {
			return e
		}
		if rq.has("versioning") {
			return errNotImplemented("PutBucketVersioning")
		}
		// The body, if any, is a CreateBucketConfiguration; any location is accepted.
		if p, e := newPayload(rq.r, rq.auth, maxXMLBody); e != nil {
			return e
		} else if _, err := io.Copy(io.Discard, p); err != nil {
			return asAPIError(err)
		}
		if e := s.store.createBucket(rq.bucket, s.now()); e != nil {
			return e
		}
		rq.w.Header().Set("Location", "/"+rq.bucket)
		rq.w.WriteHeader(http.StatusOK)
		return nil
	case http.MethodHead:
		if !s.store.hasBucket(rq.bucket) {
			return errNoSuchBucket(rq.bucket)
		}
		rq.w.Header().Set("X-Amz-Bucket-Region", s.opts.Region)
		rq.w.WriteHeader(http.StatusOK)
		return nil
	case http.MethodDelete:
		if e := s.store.deleteBucket(rq.bucket); e != nil {
			return e
		}
		rq.w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodPost:
		if !s.store.hasBucket(rq.bucket) {
			return errNoSuchBucket(rq.bucket)
		}
		if rq.has("delete") {
			return s.deleteObjects(rq)
		}
		return errNotImplemented("POST on a bucket")
	case http.MethodGet:
		if !s.store.hasBucket(rq.bucket) {
			return errNoSuchBucket(rq.bucket)
		}
		switch {
		case rq.has("location"):
			loc := s.opts.Region
			if loc == "us-east-1" {
				loc = ""
			}
			return writeXML(rq.w, http.StatusOK, struct {
				XMLName xml.Name `xml:"LocationConstraint"`
				NS      string   `xml:"xmlns,attr"`
				Value   string   `xml:",chardata"`
			}{NS: s3XMLNS, Value: loc})
		case rq.has("versioning"):
			return writeXML(rq.w, http.StatusOK, struct {
				XMLName xml.Name `xml:"VersioningConfiguration"`
				NS      string   `xml:"xmlns,attr"`
			}{NS: s3XMLNS})
		case rq.has("uploads"):
			return errNotImplemented("ListMultipartUploads")
		case rq.q.Get("list-type") == "2":
			return s.listObjects(rq, true)
		}
		return s.listObjects(rq, false)
	}
	return apiErr("MethodNotAllowed", http.StatusMethodNotAllowed, "The specified method is not allowed against this resource.")
}

func asAPIError(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	return errInternal(err)
}

func writeXML(w http.ResponseWriter, status int, v any) *APIError {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(v)
	return nil
}

type owner struct {
	ID          string `xml:"ID"`
	DisplayName string `xml:"DisplayName"`
}

func (s *Server) owner() owner { return owner{ID: "s3local", DisplayName: "s3local"} }

func (s *Server) listBuckets(rq *request) *APIError {
	type bucket struct {
		Name         string `xml:"Name"`
		CreationDate string `xml:"CreationDate"`
	}
	var res struct {
		XMLName xml.Name `xml:"ListAllMyBucketsResult"`
		NS      string   `xml:"xmlns,attr"`
		Owner   owner    `xml:"Owner"`
		Buckets []bucket `xml:"Buckets>Bucket"`
	}
	res.NS, res.Owner = s3XMLNS, s.owner()
	for _, b := range s.store.listBuckets() {
		res.Buckets = append(res.Buckets, bucket{b.Name, b.Created.UTC().Format(xmlTimeLayout)})
	}
	return writeXML(rq.w, http.StatusOK, res)
}

// metaFromHeaders collects the stored headers and x-amz-meta-* of a write.
func metaFromHeaders(h http.Header, m *objectMeta) *APIError {
	m.ContentType = h.Get("Content-Type")
	enc := []string{}
	for _, e := range strings.Split(h.Get("Content-Encoding"), ",") {
		if e = strings.TrimSpace(e); e != "" && e != "aws-chunked" {
			enc = append(enc, e)
		}
	}
	m.ContentEncoding = strings.Join(enc, ",")
	m.ContentDisposition = h.Get("Content-Disposition")
	m.ContentLanguage = h.Get("Content-Language")
	m.CacheControl = h.Get("Cache-Control")
	m.Expires = h.Get("Expires")
	size := 0
	for name, vals := range h {
		if !strings.HasPrefix(name, metaHeaderPref) {
			continue
		}
		if m.UserMeta == nil {
			m.UserMeta = map[string]string{}
		}
		k := strings.ToLower(strings.TrimPrefix(name, metaHeaderPref))
		v := strings.Join(vals, ",")
		m.UserMeta[k] = v
		size += len(k) + len(v)
	}
	if size > 2048 {
		return apiErr("MetadataTooLarge", http.StatusBadRequest, "Your metadata headers exceed the maximum allowed metadata size (%d > 2048 bytes)", size)
	}
	return nil
}

func (s *Server) putObject(rq *request) *APIError {
	p, e := newPayload(rq.r, rq.auth, s.opts.MaxObjectSize)
	if e != nil {
		return e.at(rq.bucket, rq.key)
	}
	m := &objectMeta{Key: rq.key}
	if e := metaFromHeaders(rq.r.Header, m); e != nil {
		return e.at(rq.bucket, rq.key)
	}
	staged, n, err := s.store.stage(p)
	if err != nil {
		return asAPIError(err).at(rq.bucket, rq.key)
	}
	m.Size, m.ETag, m.Checksums = n, p.ETag(), p.Checksums()
	m.LastModified, m.Version = s.now().UTC(), newID(16)
	if e := s.commitObject(rq, m, staged, bus.ObjectCreatedPut); e != nil {
		return e
	}
	for alg, v := range m.Checksums {
		rq.w.Header().Set(checksumHeaderPrefix+alg, v)
	}
	rq.w.Header().Set("ETag", `"`+m.ETag+`"`)
	rq.w.WriteHeader(http.StatusOK)
	return nil
}

// writePrecondition implements conditional writes (If-None-Match: * creates only; If-Match: etag
// replaces only that version), checked atomically with the commit.
func writePrecondition(h http.Header) func(old *objectMeta) *APIError {
	ifNone, ifMatch := h.Get("If-None-Match"), h.Get("If-Match")
	if ifNone == "" && ifMatch == "" {
		return nil
	}
	return func(old *objectMeta) *APIError {
		failed := apiErr("PreconditionFailed", http.StatusPreconditionFailed, "At least one of the pre-conditions you specified did not hold")
		if ifNone != "" && old != nil && etagMatches(ifNone, old.ETag) {
			return failed
		}
		if ifMatch != "" && (old == nil || !etagMatches(ifMatch, old.ETag)) {
			if old == nil {
				return errNoSuchKey("", "")
			}
			return failed
		}
		return nil
	}
}

// commitObject makes a staged object visible and announces it: intent, commit, publish, clear.
func (s *Server) commitObject(rq *request, m *objectMeta, staged, eventName string) *APIError {
	precond := writePrecondition(rq.r.Header)
	if s.opts.Publisher == nil {
		if e := s.store.commit(rq.bucket, m, staged, precond); e != nil {
			os.Remove(staged)
			return e.at(rq.bucket, rq.key)
		}
		return nil
	}
	in, err := s.newIntent(rq.bucket, m, eventName, rq.id, rq.sourceIP())
	if err != nil {
		os.Remove(staged)
		return errInternal(err).at(rq.bucket, rq.key)
	}
	if err := s.journal.add(in); err != nil {
		os.Remove(staged)
		return errInternal(err).at(rq.bucket, rq.key)
	}
	if e := s.store.commit(rq.bucket, m, staged, precond); e != nil {
		os.Remove(staged)
		_ = s.journal.done(in)
		return e.at(rq.bucket, rq.key)
	}
	if err := s.deliver(rq.r.Context(), in); err != nil {
		return errUnavailable(err).at(rq.bucket, rq.key)
	}
	return nil
}

// byteRange parses a single "bytes=" range; ok is false when the header should be ignored.
func byteRange(h string, size int64) (start, length int64, ok bool, e *APIError) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, nil
	}
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false, nil
	}
	bad := func() (int64, int64, bool, *APIError) {
		return 0, 0, false, apiErr("InvalidRange", http.StatusRequestedRangeNotSatisfiable, "The requested range %q is not satisfiable for an object of %d bytes", h, size)
	}
	if a == "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false, nil
		}
		if n == 0 || size == 0 {
			return bad()
		}
		if n > size {
			n = size
		}
		return size - n, n, true, nil
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 {
		return 0, 0, false, nil
	}
	last := size - 1
	if b != "" {
		l, err := strconv.ParseInt(b, 10, 64)
		if err != nil || l < first {
			return 0, 0, false, nil
		}
		if l < last {
			last = l
		}
	}
	if first >= size {
		return bad()
	}
	return first, last - first + 1, true, nil
}

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		t = strings.TrimPrefix(t, "W/")
		if t == "*" || strings.Trim(t, `"`) == etag {
			return true
		}
	}
	return false
}

// checkConditions applies If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since.
func checkConditions(h http.Header, m *objectMeta) (notModified bool, e *APIError) {
	lm := m.LastModified.Truncate(time.Second)
	failed := apiErr("PreconditionFailed", http.StatusPreconditionFailed, "At least one of the pre-conditions you specified did not hold")
	if v := h.Get("If-Match"); v != "" {
		if !etagMatches(v, m.ETag) {
			return false, failed
		}
	} else if v := h.Get("If-Unmodified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && lm.After(t) {
			return false, failed
		}
	}
	if v := h.Get("If-None-Match"); v != "" {
		if etagMatches(v, m.ETag) {
			return true, nil
		}
	} else if v := h.Get("If-Modified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && !lm.After(t) {
			return true, nil
		}
	}
	return false, nil
}

func (s *Server) objectHeaders(rq *request, m *objectMeta) {
	h := rq.w.Header()
	ct := m.ContentType
	if ct == "" {
		ct = defaultCType
	}
	set := func(name, stored, override string) {
		if v := rq.q.Get(override); v != "" {
			h.Set(name, v)
		} else if stored != "" {
			h.Set(name, stored)
		}
	}
	set("Content-Type", ct, "response-content-type")
	set("Content-Encoding", m.ContentEncoding, "response-content-encoding")
	set("Content-Disposition", m.ContentDisposition, "response-content-disposition")
	set("Content-Language", m.ContentLanguage, "response-content-language")
	set("Cache-Control", m.CacheControl, "response-cache-control")
	set("Expires", m.Expires, "response-expires")
	h.Set("ETag", `"`+m.ETag+`"`)
	h.Set("Last-Modified", m.LastModified.UTC().Format(http.TimeFormat))
	h.Set("Accept-Ranges", "bytes")
	for k, v := range m.UserMeta {
		h[metaHeaderPref+k] = []string{v}
	}
	if m.Parts > 0 {
		h.Set("X-Amz-Mp-Parts-Count", strconv.Itoa(m.Parts))
	}
}

func (s *Server) getObject(rq *request) *APIError {
	m, f, e := s.store.open(rq.bucket, rq.key)
	if e != nil {
		return e
	}
	defer f.Close()
	notMod, e := checkConditions(rq.r.Header, m)
	if e != nil {
		return e.at(rq.bucket, rq.key)
	}
	s.objectHeaders(rq, m)
	if notMod {
		rq.w.Header().Del("Content-Type")
		rq.w.WriteHeader(http.StatusNotModified)
		return nil
	}
	start, length, partial := int64(0), m.Size, false
	if h := rq.r.Header.Get("Range"); h != "" {
		st, n, ok, e := byteRange(h, m.Size)
		if e != nil {
			rq.w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(m.Size, 10))
			return e.at(rq.bucket, rq.key)
		}
		if ok {
			start, length, partial = st, n, true
		}
	}
	if !partial && strings.EqualFold(rq.r.Header.Get("X-Amz-Checksum-Mode"), "ENABLED") {
		for alg, v := range m.Checksums {
			rq.w.Header().Set(checksumHeaderPrefix+alg, v)
		}
	}
	rq.w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		rq.w.Header().Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(start+length-1, 10)+"/"+strconv.FormatInt(m.Size, 10))
	}
	rq.w.WriteHeader(status)
	if rq.r.Method == http.MethodHead {
		return nil
	}
	if _, err := io.Copy(rq.w, io.NewSectionReader(f, start, length)); err != nil {
		s.logf("GET s3://%s/%s: %v", rq.bucket, rq.key, err)
	}
	return nil
}

func (s *Server) deleteObject(rq *request) *APIError {
	if e := s.store.remove(rq.bucket, rq.key); e != nil {
		return e.at(rq.bucket, rq.key)
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) deleteObjects(rq *request) *APIError {
	p, e := newPayload(rq.r, rq.auth, maxXMLBody)
	if e != nil {
		return e
	}
	var req struct {
		Quiet   bool `xml:"Quiet"`
		Objects []struct {
			Key string `xml:"Key"`
		} `xml:"Object"`
	}
	raw, err := io.ReadAll(p)
	if err != nil {
		return asAPIError(err)
	}
	if err := xml.Unmarshal(raw, &req); err != nil {
		return apiErr("MalformedXML", http.StatusBadRequest, "The XML you provided was not well-formed or did not validate against our published schema: %v", err)
	}
	if len(req.Objects) == 0 || len(req.Objects) > 1000 {
		return apiErr("MalformedXML", http.StatusBadRequest, "Delete needs 1 to 1000 objects, got %d", len(req.Objects))
	}
	type deleted struct {
		Key string `xml:"Key"`
	}
	type delErr struct {
		Key     string `xml:"Key"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	var res struct {
		XMLName xml.Name  `xml:"DeleteResult"`
		NS      string    `xml:"xmlns,attr"`
		Deleted []deleted `xml:"Deleted"`
		Errors  []delErr  `xml:"Error"`
	}
	res.NS = s3XMLNS
	for _, o := range req.Objects {
		if e := ValidateKey(o.Key); e != nil {
			res.Errors = append(res.Errors, delErr{o.Key, e.Code, e.Message})
			continue
		}
		if e := s.store.remove(rq.bucket, o.Key); e != nil {
			res.Errors = append(res.Errors, delErr{o.Key, e.Code, e.Message})
			continue
		}
		if !req.Quiet {
			res.Deleted = append(res.Deleted, deleted{o.Key})
		}
	}
	return writeXML(rq.w, http.StatusOK, res)
}

func (s *Server) copyObject(rq *request) *APIError {
	src := rq.r.Header.Get("X-Amz-Copy-Source")
	if i := strings.IndexByte(src, '?'); i >= 0 {
		if v, _ := url.ParseQuery(src[i+1:]); v.Get("versionId") != "" && v.Get("versionId") != "null" {
			return errNotImplemented("copying a specific version")
		}
		src = src[:i]
	}
	dec, err := url.PathUnescape(src)
	if err != nil {
		return errInvalidArgument("x-amz-copy-source %q is not URL-encoded correctly", src)
	}
	sb, sk, ok := strings.Cut(strings.TrimPrefix(dec, "/"), "/")
	if !ok || sb == "" || sk == "" {
		return errInvalidArgument("x-amz-copy-source %q must be bucket/key", src)
	}
	if e := ValidateKey(sk); e != nil {
		return e.at(sb, sk)
	}
	directive := strings.ToUpper(rq.r.Header.Get("X-Amz-Metadata-Directive"))
	if directive != "" && directive != "COPY" && directive != "REPLACE" {
		return errInvalidArgument("x-amz-metadata-directive %q must be COPY or REPLACE", directive)
	}
	if sb == rq.bucket && sk == rq.key && directive != "REPLACE" {
		return errInvalidRequest("This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.").at(rq.bucket, rq.key)
	}
	sm, f, e := s.store.open(sb, sk)
	if e != nil {
		return e
	}
	defer f.Close()
	failed := apiErr("PreconditionFailed", http.StatusPreconditionFailed, "At least one of the pre-conditions you specified did not hold").at(sb, sk)
	if v := rq.r.Header.Get("X-Amz-Copy-Source-If-Match"); v != "" && !etagMatches(v, sm.ETag) {
		return failed
	}
	if v := rq.r.Header.Get("X-Amz-Copy-Source-If-None-Match"); v != "" && etagMatches(v, sm.ETag) {
		return failed
	}
	m := &objectMeta{Key: rq.key}
	if directive == "REPLACE" {
		if e := metaFromHeaders(rq.r.Header, m); e != nil {
			return e.at(rq.bucket, rq.key)
		}
	} else {
		m.ContentType, m.ContentEncoding, m.ContentDisposition = sm.ContentType, sm.ContentEncoding, sm.ContentDisposition
		m.ContentLanguage, m.CacheControl, m.Expires = sm.ContentLanguage, sm.CacheControl, sm.Expires
		if len(sm.UserMeta) > 0 {
			m.UserMeta = map[string]string{}
			for k, v := range sm.UserMeta {
				m.UserMeta[k] = v
			}
		}
	}
	h := md5.New()
	staged, n, err := s.store.stage(io.TeeReader(f, h))
	if err != nil {
		return asAPIError(err).at(rq.bucket, rq.key)
	}
	m.Size, m.ETag = n, hex.EncodeToString(h.Sum(nil))
	m.LastModified, m.Version = s.now().UTC(), newID(16)
	if e := s.commitObject(rq, m, staged, bus.ObjectCreatedCopy); e != nil {
		return e
	}
	return writeXML(rq.w, http.StatusOK, struct {
		XMLName      xml.Name `xml:"CopyObjectResult"`
		NS           string   `xml:"xmlns,attr"`
		LastModified string   `xml:"LastModified"`
		ETag         string   `xml:"ETag"`
	}{NS: s3XMLNS, LastModified: m.LastModified.Format(xmlTimeLayout), ETag: `"` + m.ETag + `"`})
}

type contentXML struct {
	Key          string `xml:"Key"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
	Owner        *owner `xml:"Owner,omitempty"`
	StorageClass string `xml:"StorageClass"`
}

type prefixXML struct {
	Prefix string `xml:"Prefix"`
}

// listObjects answers ListObjects (v1) and ListObjectsV2.
func (s *Server) listObjects(rq *request, v2 bool) *APIError {
	q := rq.q
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	enc := q.Get("encoding-type")
	if enc != "" && enc != "url" {
		return errInvalidArgument("Invalid Encoding Method specified in Request: %q", enc)
	}
	maxKeys := maxListKeys
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errInvalidArgument("max-keys %q must be a non-negative integer", v)
		}
		if n < maxKeys {
			maxKeys = n
		}
	}
	after := ""
	token, startAfter, marker := q.Get("continuation-token"), q.Get("start-after"), q.Get("marker")
	if v2 {
		if q.Has("continuation-token") {
			raw, err := hex.DecodeString(token)
			if err != nil || token == "" {
				return errInvalidArgument("The continuation token provided is incorrect")
			}
			after = string(raw)
		} else {
			after = startAfter
		}
	} else {
		after = marker
	}
	l := &listing{}
	if maxKeys > 0 {
		var e *APIError
		if l, e = s.store.list(rq.bucket, prefix, delim, after, maxKeys); e != nil {
			return e
		}
	}
	encode := func(v string) string {
		if enc == "url" {
			return bus.EncodeS3Key(v)
		}
		return v
	}
	fetchOwner := !v2 || q.Get("fetch-owner") == "true"
	contents := make([]contentXML, 0, len(l.objects))
	for _, o := range l.objects {
		c := contentXML{Key: encode(o.Key), LastModified: o.LastModified.UTC().Format(xmlTimeLayout), ETag: `"` + o.ETag + `"`, Size: o.Size, StorageClass: "STANDARD"}
		if fetchOwner {
			ow := s.owner()
			c.Owner = &ow
		}
		contents = append(contents, c)
	}
	prefixes := make([]prefixXML, 0, len(l.prefixes))
	for _, p := range l.prefixes {
		prefixes = append(prefixes, prefixXML{encode(p)})
	}
	sort.Slice(prefixes, func(i, j int) bool { return prefixes[i].Prefix < prefixes[j].Prefix })
	if v2 {
		res := listV2{NS: s3XMLNS, Name: rq.bucket, Prefix: encode(prefix), Delimiter: encode(delim), MaxKeys: maxKeys,
			KeyCount: len(contents) + len(prefixes), IsTruncated: l.truncated, ContinuationToken: token,
			StartAfter: encode(startAfter), EncodingType: enc, Contents: contents, CommonPrefixes: prefixes}
		if l.truncated {
			res.NextContinuationToken = hex.EncodeToString([]byte(l.last))
		}
		if !fetchOwner {
			// The common case (a listing page of up to 1,000 keys): written directly, the same
			// bytes encoding/xml gives, without its reflection per field.
			return writeListV2(rq.w, &res)
		}
		return writeXML(rq.w, http.StatusOK, res)
	}
	res := struct {
		XMLName        xml.Name     `xml:"ListBucketResult"`
		NS             string       `xml:"xmlns,attr"`
		Name           string       `xml:"Name"`
		Prefix         string       `xml:"Prefix"`
		Marker         string       `xml:"Marker"`
		NextMarker     string       `xml:"NextMarker,omitempty"`
		Delimiter      string       `xml:"Delimiter,omitempty"`
		MaxKeys        int          `xml:"MaxKeys"`
		IsTruncated    bool         `xml:"IsTruncated"`
		EncodingType   string       `xml:"EncodingType,omitempty"`
		Contents       []contentXML `xml:"Contents"`
		CommonPrefixes []prefixXML  `xml:"CommonPrefixes"`
	}{NS: s3XMLNS, Name: rq.bucket, Prefix: encode(prefix), Marker: encode(marker), Delimiter: encode(delim), MaxKeys: maxKeys,
		IsTruncated: l.truncated, EncodingType: enc, Contents: contents, CommonPrefixes: prefixes}
	if l.truncated {
		res.NextMarker = encode(l.last)
	}
	return writeXML(rq.w, http.StatusOK, res)
}
