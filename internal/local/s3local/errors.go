package s3local

import (
	"encoding/xml"
	"fmt"
	"net/http"
)

// APIError is an S3 error response: an S3 error code, its HTTP status and a message. Handlers
// return it; the server writes it as the S3 XML error document (a bare status for HEAD).
type APIError struct {
	Code    string // S3 error code: NoSuchKey, SignatureDoesNotMatch, ...
	Status  int    // HTTP status
	Message string
	Bucket  string
	Key     string
	Err     error // underlying cause, not sent to the client
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("s3local: %s (%d): %s", e.Code, e.Status, e.Message)
	if e.Bucket != "" {
		s += " [s3://" + e.Bucket
		if e.Key != "" {
			s += "/" + e.Key
		}
		s += "]"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *APIError) Unwrap() error { return e.Err }

func apiErr(code string, status int, format string, args ...any) *APIError {
	return &APIError{Code: code, Status: status, Message: fmt.Sprintf(format, args...)}
}

func (e *APIError) at(bucket, key string) *APIError {
	c := *e
	c.Bucket, c.Key = bucket, key
	return &c
}

// The S3 errors this server returns.
func errNoSuchBucket(b string) *APIError {
	return (&APIError{Code: "NoSuchBucket", Status: http.StatusNotFound, Message: "The specified bucket does not exist"}).at(b, "")
}
func errNoSuchKey(b, k string) *APIError {
	return (&APIError{Code: "NoSuchKey", Status: http.StatusNotFound, Message: "The specified key does not exist."}).at(b, k)
}
func errNoSuchUpload(b, k string) *APIError {
	return (&APIError{Code: "NoSuchUpload", Status: http.StatusNotFound, Message: "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed."}).at(b, k)
}
func errInvalidArgument(format string, args ...any) *APIError {
	return apiErr("InvalidArgument", http.StatusBadRequest, format, args...)
}
func errInvalidRequest(format string, args ...any) *APIError {
	return apiErr("InvalidRequest", http.StatusBadRequest, format, args...)
}
func errAccessDenied(format string, args ...any) *APIError {
	return apiErr("AccessDenied", http.StatusForbidden, format, args...)
}
func errSignature(format string, args ...any) *APIError {
	return apiErr("SignatureDoesNotMatch", http.StatusForbidden, format, args...)
}
func errInternal(err error) *APIError {
	return &APIError{Code: "InternalError", Status: http.StatusInternalServerError, Message: "We encountered an internal error. Please try again.", Err: err}
}
func errUnavailable(err error) *APIError {
	return &APIError{Code: "ServiceUnavailable", Status: http.StatusServiceUnavailable, Message: "Event notification could not be delivered; please retry.", Err: err}
}
func errNotImplemented(what string) *APIError {
	return apiErr("NotImplemented", http.StatusNotImplemented, "%s is not implemented by s3local", what)
}

type xmlError struct {
	XMLName    xml.Name `xml:"Error"`
	Code       string   `xml:"Code"`
	Message    string   `xml:"Message"`
	BucketName string   `xml:"BucketName,omitempty"`
	Key        string   `xml:"Key,omitempty"`
	Resource   string   `xml:"Resource"`
	RequestID  string   `xml:"RequestId"`
}

func writeError(w http.ResponseWriter, r *http.Request, reqID string, e *APIError) {
	if e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(e.Status)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(e.Status)
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(xmlError{Code: e.Code, Message: e.Message, BucketName: e.Bucket, Key: e.Key, Resource: r.URL.Path, RequestID: reqID})
}
