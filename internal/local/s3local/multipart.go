package s3local

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hpa-plates/hpa/internal/bus"
)

const maxPartNumber = 10000

type uploadRecord struct {
	Bucket    string     `json:"bucket"`
	Key       string     `json:"key"`
	Initiated time.Time  `json:"initiated"`
	Meta      objectMeta `json:"meta"` // headers and user metadata given at creation
}

type partRecord struct {
	Number int    `json:"number"`
	ETag   string `json:"etag"`
	Size   int64  `json:"size"`
	Data   string `json:"data"` // file name of the part content in the upload directory
}

func (s *Server) uploadDir(id string) string { return filepath.Join(s.store.dir, "uploads", id) }

func validUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// loadUpload reads an upload record and checks that it belongs to bucket/key.
func (s *Server) loadUpload(rq *request) (*uploadRecord, *APIError) {
	id := rq.q.Get("uploadId")
	if !validUploadID(id) {
		return nil, errNoSuchUpload(rq.bucket, rq.key)
	}
	raw, err := os.ReadFile(filepath.Join(s.uploadDir(id), "upload.json"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errNoSuchUpload(rq.bucket, rq.key)
		}
		return nil, errInternal(err)
	}
	var u uploadRecord
	if err := json.Unmarshal(raw, &u); err != nil {
		return nil, errInternal(&StoreError{Path: filepath.Join(s.uploadDir(id), "upload.json"), Reason: "corrupt upload record", Err: err})
	}
	if u.Bucket != rq.bucket || u.Key != rq.key {
		return nil, errNoSuchUpload(rq.bucket, rq.key)
	}
	return &u, nil
}

func (s *Server) createMultipart(rq *request) *APIError {
	u := uploadRecord{Bucket: rq.bucket, Key: rq.key, Initiated: s.now().UTC()}
	if e := metaFromHeaders(rq.r.Header, &u.Meta); e != nil {
		return e.at(rq.bucket, rq.key)
	}
	id := newID(16)
	raw, _ := json.Marshal(u)
	if err := writeFileAtomic(filepath.Join(s.uploadDir(id), "upload.json"), raw); err != nil {
		return errInternal(&StoreError{Path: s.uploadDir(id), Reason: "cannot create upload", Err: err})
	}
	return writeXML(rq.w, http.StatusOK, struct {
		XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
		NS       string   `xml:"xmlns,attr"`
		Bucket   string   `xml:"Bucket"`
		Key      string   `xml:"Key"`
		UploadID string   `xml:"UploadId"`
	}{NS: s3XMLNS, Bucket: rq.bucket, Key: rq.key, UploadID: id})
}

func partFile(n int) string { return fmt.Sprintf("part-%05d.json", n) }

func (s *Server) uploadPart(rq *request) *APIError {
	n, err := strconv.Atoi(rq.q.Get("partNumber"))
	if err != nil || n < 1 || n > maxPartNumber {
		return errInvalidArgument("Part number must be an integer between 1 and %d, inclusive", maxPartNumber).at(rq.bucket, rq.key)
	}
	if _, e := s.loadUpload(rq); e != nil {
		return e
	}
	id := rq.q.Get("uploadId")
	p, e := newPayload(rq.r, rq.auth, s.opts.MaxObjectSize)
	if e != nil {
		return e.at(rq.bucket, rq.key)
	}
	staged, size, err := s.store.stage(p)
	if err != nil {
		return asAPIError(err).at(rq.bucket, rq.key)
	}
	pr := partRecord{Number: n, ETag: p.ETag(), Size: size, Data: fmt.Sprintf("part-%05d.%s.data", n, newID(8))}
	dir := s.uploadDir(id)
	s.upMu.Lock()
	defer s.upMu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, "upload.json")); err != nil {
		os.Remove(staged)
		return errNoSuchUpload(rq.bucket, rq.key) // aborted or completed meanwhile
	}
	if err := os.Rename(staged, filepath.Join(dir, pr.Data)); err != nil {
		os.Remove(staged)
		return errInternal(err)
	}
	var old partRecord
	if raw, err := os.ReadFile(filepath.Join(dir, partFile(n))); err == nil && json.Unmarshal(raw, &old) == nil && old.Data != "" {
		defer os.Remove(filepath.Join(dir, old.Data))
	}
	raw, _ := json.Marshal(pr)
	if err := writeFileAtomic(filepath.Join(dir, partFile(n)), raw); err != nil {
		return errInternal(err)
	}
	for alg, v := range p.Checksums() {
		rq.w.Header().Set(checksumHeaderPrefix+alg, v)
	}
	rq.w.Header().Set("ETag", `"`+pr.ETag+`"`)
	rq.w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) abortMultipart(rq *request) *APIError {
	if _, e := s.loadUpload(rq); e != nil {
		return e
	}
	s.upMu.Lock()
	defer s.upMu.Unlock()
	if err := os.RemoveAll(s.uploadDir(rq.q.Get("uploadId"))); err != nil {
		return errInternal(err)
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) completeMultipart(rq *request) *APIError {
	u, e := s.loadUpload(rq)
	if e != nil {
		return e
	}
	id := rq.q.Get("uploadId")
	p, e := newPayload(rq.r, rq.auth, maxXMLBody)
	if e != nil {
		return e
	}
	body, err := io.ReadAll(p)
	if err != nil {
		return asAPIError(err)
	}
	var req struct {
		Parts []struct {
			PartNumber int    `xml:"PartNumber"`
			ETag       string `xml:"ETag"`
		} `xml:"Part"`
	}
	malformed := func(why string) *APIError {
		return apiErr("MalformedXML", http.StatusBadRequest, "The XML you provided was not well-formed or did not validate against our published schema: %s", why).at(rq.bucket, rq.key)
	}
	if err := xml.Unmarshal(body, &req); err != nil {
		return malformed(err.Error())
	}
	if len(req.Parts) == 0 {
		return malformed("no parts")
	}
	s.upMu.Lock()
	defer s.upMu.Unlock()
	dir := s.uploadDir(id)
	if _, err := os.Stat(filepath.Join(dir, "upload.json")); err != nil {
		return errNoSuchUpload(rq.bucket, rq.key)
	}
	parts := make([]partRecord, len(req.Parts))
	for i, rp := range req.Parts {
		if i > 0 && rp.PartNumber <= req.Parts[i-1].PartNumber {
			return apiErr("InvalidPartOrder", http.StatusBadRequest, "The list of parts was not in ascending order. The parts list must be specified in order by part number.").at(rq.bucket, rq.key)
		}
		invalid := apiErr("InvalidPart", http.StatusBadRequest, "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag (part %d).", rp.PartNumber).at(rq.bucket, rq.key)
		if rp.PartNumber < 1 || rp.PartNumber > maxPartNumber {
			return invalid
		}
		raw, err := os.ReadFile(filepath.Join(dir, partFile(rp.PartNumber)))
		if err != nil {
			return invalid
		}
		if err := json.Unmarshal(raw, &parts[i]); err != nil {
			return errInternal(&StoreError{Path: filepath.Join(dir, partFile(rp.PartNumber)), Reason: "corrupt part record", Err: err})
		}
		if strings.Trim(rp.ETag, `"`) != parts[i].ETag {
			return invalid
		}
	}
	for i, pr := range parts[:len(parts)-1] {
		if pr.Size < s.opts.MinPartSize {
			return apiErr("EntityTooSmall", http.StatusBadRequest, "Your proposed upload is smaller than the minimum allowed object size (part %d is %d bytes, minimum %d).", req.Parts[i].PartNumber, pr.Size, s.opts.MinPartSize).at(rq.bucket, rq.key)
		}
	}
	// Concatenate the parts into one staged file; the ETag is the MD5 of the part MD5s plus "-N".
	etags := md5.New()
	readers := make([]io.Reader, 0, len(parts))
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, pr := range parts {
		f, err := os.Open(filepath.Join(dir, pr.Data))
		if err != nil {
			return errInternal(&StoreError{Path: filepath.Join(dir, pr.Data), Reason: "part content missing", Err: err})
		}
		files = append(files, f)
		readers = append(readers, f)
		raw, _ := hex.DecodeString(pr.ETag)
		etags.Write(raw)
	}
	staged, size, err := s.store.stage(io.MultiReader(readers...))
	if err != nil {
		return asAPIError(err).at(rq.bucket, rq.key)
	}
	m := u.Meta
	m.Key, m.Size, m.Parts = rq.key, size, len(parts)
	m.ETag = hex.EncodeToString(etags.Sum(nil)) + "-" + strconv.Itoa(len(parts))
	m.LastModified, m.Version = s.now().UTC(), newID(16)
	if e := s.commitObject(rq, &m, staged, bus.ObjectCreatedCompleteMultipartUpload); e != nil {
		// On 503 the object is committed but its event is late; the upload stays so that the
		// client's retry completes it again (a new version whose event supersedes this one).
		return e
	}
	if err := os.RemoveAll(dir); err != nil {
		s.logf("removing completed upload %s: %v", id, err)
	}
	return writeXML(rq.w, http.StatusOK, struct {
		XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
		NS       string   `xml:"xmlns,attr"`
		Location string   `xml:"Location"`
		Bucket   string   `xml:"Bucket"`
		Key      string   `xml:"Key"`
		ETag     string   `xml:"ETag"`
	}{NS: s3XMLNS, Location: "/" + rq.bucket + "/" + rq.key, Bucket: rq.bucket, Key: rq.key, ETag: `"` + m.ETag + `"`})
}
