package s3events

import (
	"fmt"
	"regexp"
	"strings"
)

// DefaultKeyPattern is the layout of uploaded channel images: any prefix (optional, any depth), one
// directory per plate, then "{Id}_{channel}.{ext}" as in the HPA downloads.
const DefaultKeyPattern = "{prefix}/{plate}/{id}_{channel}.{ext}"

// Channels are the four stains a key may name (file-name suffixes of HPA images).
var Channels = []string{"red", "green", "blue", "yellow"}

// Extensions are the image file extensions the default mapping accepts (case-insensitive).
var Extensions = []string{"png", "tif", "tiff", "jpg", "jpeg"}

// SampleKey is what a key names: one channel image of one sample on one plate.
type SampleKey struct {
	Prefix   string
	Plate    string // "" when the pattern has no plate
	SampleID string
	Channel  string // lower case: red, green, blue or yellow
	Ext      string // lower case, without the dot ("" when the pattern has none)
}

// PatternError is returned by NewKeyMapper for a pattern it cannot use.
type PatternError struct {
	Pattern string
	Reason  string
	Err     error
}

func (e *PatternError) Error() string {
	s := fmt.Sprintf("s3events: key pattern %q: %s", e.Pattern, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *PatternError) Unwrap() error { return e.Err }

// KeyMapper maps object keys to samples. It is safe for concurrent use.
type KeyMapper struct {
	pattern string
	re      *regexp.Regexp
	groups  map[string]int
}

// NewKeyMapper compiles a key pattern. Two forms are accepted:
//
//   - a template of literal text and placeholders {prefix}, {plate}, {id}, {channel}, {ext}:
//     {prefix} matches any run of path segments (a leading "{prefix}/" is optional in the key),
//     {plate} and {id} one path segment ({id} may contain '_'; the last '_' starts the channel),
//     {channel} one of Channels and {ext} one of Extensions, both case-insensitive;
//   - a regular expression, written "re:" + expression, with named groups "id" and "channel"
//     (and optionally "plate", "prefix", "ext"); it must match the whole key.
//
// Both forms need {id} and {channel}. An empty pattern means DefaultKeyPattern.
func NewKeyMapper(pattern string) (*KeyMapper, error) {
	if pattern == "" {
		pattern = DefaultKeyPattern
	}
	var expr string
	if rest, ok := strings.CutPrefix(pattern, "re:"); ok {
		expr = rest
	} else {
		var err error
		if expr, err = templateRegexp(pattern); err != nil {
			return nil, err
		}
	}
	re, err := regexp.Compile(`^(?:` + expr + `)$`)
	if err != nil {
		return nil, &PatternError{Pattern: pattern, Reason: "invalid regular expression", Err: err}
	}
	m := &KeyMapper{pattern: pattern, re: re, groups: map[string]int{}}
	for i, name := range re.SubexpNames() {
		if name == "" {
			continue
		}
		switch name {
		case "prefix", "plate", "id", "channel", "ext":
		default:
			return nil, &PatternError{Pattern: pattern, Reason: "unknown group " + name + " (want prefix, plate, id, channel, ext)"}
		}
		if _, dup := m.groups[name]; dup {
			return nil, &PatternError{Pattern: pattern, Reason: "group " + name + " appears twice"}
		}
		m.groups[name] = i
	}
	for _, need := range []string{"id", "channel"} {
		if _, ok := m.groups[need]; !ok {
			return nil, &PatternError{Pattern: pattern, Reason: "needs {" + need + "}"}
		}
	}
	return m, nil
}

func templateRegexp(pattern string) (string, error) {
	var b strings.Builder
	seen := map[string]bool{}
	rest := pattern
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			if strings.IndexByte(rest, '}') >= 0 {
				return "", &PatternError{Pattern: pattern, Reason: "unmatched '}'"}
			}
			b.WriteString(regexp.QuoteMeta(rest))
			break
		}
		if strings.IndexByte(rest[:open], '}') >= 0 {
			return "", &PatternError{Pattern: pattern, Reason: "unmatched '}'"}
		}
		b.WriteString(regexp.QuoteMeta(rest[:open]))
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return "", &PatternError{Pattern: pattern, Reason: "unclosed '{'"}
		}
		name := rest[open+1 : open+end]
		rest = rest[open+end+1:]
		if seen[name] {
			return "", &PatternError{Pattern: pattern, Reason: "placeholder {" + name + "} appears twice"}
		}
		seen[name] = true
		switch name {
		case "prefix":
			if b.Len() == 0 && strings.HasPrefix(rest, "/") {
				// A leading "{prefix}/" may be absent: "plate/X_red.png" has no prefix.
				b.WriteString(`(?:(?P<prefix>.+)/)?`)
				rest = rest[1:]
			} else {
				b.WriteString(`(?P<prefix>.*)`)
			}
		case "plate":
			b.WriteString(`(?P<plate>[^/]+)`)
		case "id":
			b.WriteString(`(?P<id>[^/]+)`)
		case "channel":
			b.WriteString(`(?P<channel>(?i:` + strings.Join(Channels, "|") + `))`)
		case "ext":
			b.WriteString(`(?P<ext>(?i:` + strings.Join(Extensions, "|") + `))`)
		default:
			return "", &PatternError{Pattern: pattern, Reason: "unknown placeholder {" + name + "} (want prefix, plate, id, channel, ext)"}
		}
	}
	return b.String(), nil
}

// Pattern is the pattern the mapper was built from.
func (m *KeyMapper) Pattern() string { return m.pattern }

// Map reports the sample a (decoded) key names; ok is false when the key is not one of ours
// (does not match, or names an empty id or an unknown channel).
func (m *KeyMapper) Map(key string) (sk SampleKey, ok bool) {
	sub := m.re.FindStringSubmatch(key)
	if sub == nil {
		return SampleKey{}, false
	}
	get := func(name string) string {
		if i, ok := m.groups[name]; ok {
			return sub[i]
		}
		return ""
	}
	sk = SampleKey{
		Prefix:   get("prefix"),
		Plate:    get("plate"),
		SampleID: get("id"),
		Channel:  strings.ToLower(get("channel")),
		Ext:      strings.ToLower(get("ext")),
	}
	if sk.SampleID == "" {
		return SampleKey{}, false
	}
	known := false
	for _, c := range Channels {
		known = known || c == sk.Channel
	}
	if !known {
		return SampleKey{}, false
	}
	return sk, true
}

// MapEvent maps the key of an event; ok is false for keys that are not ours.
func (m *KeyMapper) MapEvent(ev ObjectEvent) (SampleKey, bool) { return m.Map(ev.Key) }
