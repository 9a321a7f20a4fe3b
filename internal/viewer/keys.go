package viewer

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hpa-plates/hpa/internal/pipeline"
)

// errBadName is returned for a plate or sample name taken from a request that cannot name an
// object safely.
var errBadName = errors.New("bad name")

// checkName validates a plate (slashOK) or sample id from a URL before it becomes part of an
// object key: valid UTF-8, no control characters, no backslash, no empty, "." or ".." path
// element, not absurdly long. The same rules the inference consumer applies to uploaded keys.
func checkName(s string, slashOK bool) error {
	if s == "" || len(s) > 512 || !utf8.ValidString(s) {
		return fmt.Errorf("%w: %q", errBadName, s)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\\' || (r == '/' && !slashOK) {
			return fmt.Errorf("%w: %q contains %q", errBadName, s, r)
		}
	}
	for _, el := range strings.Split(s, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("%w: %q has an empty, '.' or '..' element", errBadName, s)
		}
	}
	return nil
}

// keyUnder checks that key is a clean key below one of the prefixes; every key the viewer
// reads or writes passes through it.
func keyUnder(key string, prefixes ...string) error {
	if key == "" || strings.HasPrefix(key, "/") || path.Clean("/"+key) != "/"+key || strings.Contains(key, "\\") {
		return fmt.Errorf("%w: key %q is not clean", errBadName, key)
	}
	for _, p := range prefixes {
		if strings.HasPrefix(key, p) {
			return nil
		}
	}
	return fmt.Errorf("%w: key %q is outside %q", errBadName, key, prefixes)
}

// keyKind classifies a key below the labels prefix of a plate.
type labelKeyKind int

const (
	notLabelKey labelKeyKind = iota
	labelJSON
	errorJSON
	submissionCSV
)

// splitLabelKey turns "<plate>/<id>.json" (rel: the key without the labels prefix) into its parts.
func splitLabelKey(rel string) (plate, id string, kind labelKeyKind) {
	slash := strings.LastIndexByte(rel, '/')
	if slash <= 0 {
		return "", "", notLabelKey
	}
	plate, base := rel[:slash], rel[slash+1:]
	switch {
	case base == "submission.csv":
		return plate, "", submissionCSV
	case strings.HasSuffix(base, ".error.json"):
		id, kind = strings.TrimSuffix(base, ".error.json"), errorJSON
	case strings.HasSuffix(base, ".json"):
		id, kind = strings.TrimSuffix(base, ".json"), labelJSON
	default:
		return "", "", notLabelKey
	}
	if id == "" {
		return "", "", notLabelKey
	}
	return plate, id, kind
}

// splitUploadKey turns "<plate>/<id>_<channel>.<ext>" (rel: the key without the upload prefix)
// into its parts, as the inference consumer's default key pattern does.
func splitUploadKey(rel string) (plate, id string, ch pipeline.Channel, ok bool) {
	slash := strings.LastIndexByte(rel, '/')
	if slash <= 0 {
		return "", "", 0, false
	}
	id, ch, _, ok = pipeline.ParseName(rel[slash+1:])
	return rel[:slash], id, ch, ok
}
