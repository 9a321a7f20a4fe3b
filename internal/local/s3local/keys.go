package s3local

import (
	"net/http"
	"strings"
	"unicode/utf8"
)

// MaxKeyLength is the longest object key accepted, in bytes (as Amazon S3).
const MaxKeyLength = 1024

// ValidateKey refuses keys that are empty, longer than MaxKeyLength bytes, not UTF-8, or that could
// be read as a path escape: NUL bytes, a leading '/', "." or ".." segments, backslashes.
func ValidateKey(key string) *APIError {
	switch {
	case key == "":
		return errInvalidArgument("object key is empty")
	case len(key) > MaxKeyLength:
		return apiErr("KeyTooLongError", http.StatusBadRequest, "object key is %d bytes, the limit is %d", len(key), MaxKeyLength)
	case !utf8.ValidString(key):
		return errInvalidArgument("object key is not valid UTF-8")
	case strings.IndexByte(key, 0) >= 0:
		return errInvalidArgument("object key contains a NUL byte")
	case strings.HasPrefix(key, "/"):
		return errInvalidArgument("object key %q is absolute", key)
	case strings.IndexByte(key, '\\') >= 0:
		return errInvalidArgument("object key %q contains a backslash", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "." || seg == ".." {
			return errInvalidArgument("object key %q has a %q path segment", key, seg)
		}
	}
	return nil
}

// ValidateBucketName applies the S3 bucket naming rules: 3-63 characters of lower-case letters,
// digits, '.' and '-', beginning and ending with a letter or digit, no "..", not an IP address.
func ValidateBucketName(name string) *APIError {
	bad := func(why string) *APIError {
		return (&APIError{Code: "InvalidBucketName", Status: http.StatusBadRequest, Message: "The specified bucket is not valid: " + why}).at(name, "")
	}
	if len(name) < 3 || len(name) > 63 {
		return bad("length must be 3 to 63")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return bad("only lower-case letters, digits, '.' and '-' are allowed")
		}
	}
	if !isAlnum(name[0]) || !isAlnum(name[len(name)-1]) {
		return bad("must begin and end with a letter or digit")
	}
	if strings.Contains(name, "..") {
		return bad("must not contain \"..\"")
	}
	dots, digits := 0, true
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			dots++
		} else if name[i] < '0' || name[i] > '9' {
			digits = false
		}
	}
	if dots == 3 && digits {
		return bad("must not look like an IP address")
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
