package bus

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hpa-plates/hpa/internal/pipeline"
)

// DefaultKeyPattern maps "<plate>/<id>_<channel>.<ext>" below the upload prefix.
const DefaultKeyPattern = `^(?P<plate>[^/]+)/(?P<id>[^/]+)_(?P<channel>red|green|blue|yellow)\.(?i:png|tiff?|jpe?g)$`

// SampleKey names one channel object of a sample.
type SampleKey struct {
	Plate   string
	ID      string
	Channel pipeline.Channel
}

// KeyError reports an object key that matches the upload layout but cannot be used safely
// (path escapes, control characters, ...), or a key pattern that is unusable.
type KeyError struct {
	Key    string
	Reason string
}

func (e *KeyError) Error() string { return fmt.Sprintf("key %q: %s", e.Key, e.Reason) }

// KeyMapper turns object keys below an upload prefix into (plate, sample id, channel) with a
// regular expression that has the named groups plate, id and channel (red|green|blue|yellow). It is
// the one key mapper: the inference consumer's assembler, the replay producer and the sweep use it.
// It is safe for concurrent use.
type KeyMapper struct {
	prefix string
	re     *regexp.Regexp
	gPlate int
	gID    int
	gCh    int
}

// NewKeyMapper compiles pattern (DefaultKeyPattern when empty); it is matched against the key
// with prefix removed.
func NewKeyMapper(prefix, pattern string) (*KeyMapper, error) {
	if pattern == "" {
		pattern = DefaultKeyPattern
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, &KeyError{Key: pattern, Reason: "bad key pattern: " + err.Error()}
	}
	m := &KeyMapper{prefix: prefix, re: re, gPlate: re.SubexpIndex("plate"), gID: re.SubexpIndex("id"), gCh: re.SubexpIndex("channel")}
	if m.gPlate < 0 || m.gID < 0 || m.gCh < 0 {
		return nil, &KeyError{Key: pattern, Reason: "key pattern needs the named groups plate, id and channel"}
	}
	return m, nil
}

// Map returns the sample key of an object key. ok is false for keys outside the prefix or not
// matching the pattern (not ours: ignored). A matching key that is unsafe gives a *KeyError.
func (m *KeyMapper) Map(key string) (sk SampleKey, ok bool, err error) {
	if !strings.HasPrefix(key, m.prefix) {
		return SampleKey{}, false, nil
	}
	sub := m.re.FindStringSubmatch(key[len(m.prefix):])
	if sub == nil {
		return SampleKey{}, false, nil
	}
	sk.Plate, sk.ID = sub[m.gPlate], sub[m.gID]
	found := false
	for c, n := range pipeline.ChannelNames {
		if sub[m.gCh] == n {
			sk.Channel, found = pipeline.Channel(c), true
		}
	}
	if !found {
		return SampleKey{}, false, &KeyError{Key: key, Reason: fmt.Sprintf("channel %q is not red, green, blue or yellow", sub[m.gCh])}
	}
	if err := checkSegment(sk.Plate, true); err != nil {
		return SampleKey{}, false, &KeyError{Key: key, Reason: "plate " + err.Error()}
	}
	if err := checkSegment(sk.ID, false); err != nil {
		return SampleKey{}, false, &KeyError{Key: key, Reason: "sample id " + err.Error()}
	}
	return sk, true, nil
}

// checkSegment refuses names that could escape a directory-backed store or break CSV/JSON
// consumers: empty, ".", "..", path elements that are, control characters, backslashes,
// invalid UTF-8. Plates may contain '/' (nested folders) when slashOK.
func checkSegment(s string, slashOK bool) error {
	if s == "" {
		return fmt.Errorf("is empty")
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\\' || r == '"' || r == ',' {
			return fmt.Errorf("%q contains %q", s, r)
		}
		if r == '/' && !slashOK {
			return fmt.Errorf("%q contains '/'", s)
		}
	}
	for _, el := range strings.Split(s, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("%q has an empty, '.' or '..' path element", s)
		}
	}
	return nil
}

// SubjectToken turns a plate into one NATS subject token: letters, digits, '-' and '_' are kept,
// every other byte becomes '_', and a short hash keeps distinct plates distinct.
func SubjectToken(plate string) string {
	var b strings.Builder
	clean := true
	for i := 0; i < len(plate); i++ {
		c := plate[i]
		if c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
			clean = false
		}
	}
	if clean && b.Len() > 0 {
		return b.String()
	}
	sum := sha256.Sum256([]byte(plate))
	return b.String() + "-" + hex.EncodeToString(sum[:4])
}
