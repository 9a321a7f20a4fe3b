package training

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// LabelErrorSchema is the schema of the error record written next to a rejected label file
// (<label key>.error.json), in the style of the per-sample hpa.error/v1 records.
const LabelErrorSchema = "hpa.error/v1"

// KindLabels is the error kind of a rejected label file (record and dead letter).
const KindLabels = "labels"

// Row is one labeled sample of a label file.
type Row struct {
	ID      string `json:"id"`
	Targets []int  `json:"targets"`
}

// RowError is one reason a label file was rejected: the 1-based line (0: the whole file), the Id
// when known, and the reason.
type RowError struct {
	Line   int    `json:"line,omitempty"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason"`
}

// LabelFileError is the record of a rejected label file, written as <key>.error.json: every row at
// fault with its reason. Nothing of the file enters the dataset.
type LabelFileError struct {
	Schema string     `json:"schema"`
	Object string     `json:"object"`
	ETag   string     `json:"etag,omitempty"`
	Kind   string     `json:"kind"`
	Reason string     `json:"reason"`
	Rows   []RowError `json:"rows"`
}

func (e *LabelFileError) Error() string {
	return fmt.Sprintf("label file %s: %s", e.Object, e.Reason)
}

// maxRowErrors bounds the rows listed in one error record.
const maxRowErrors = 1000

// ImageIndex says which channel objects exist for a sample Id: the four keys (red, green, blue,
// yellow) and their ETags, or ok false with the missing channels named.
type ImageIndex interface {
	Channels(id string) (keys, etags [4]string, missing []string)
}

// ParseLabelFile reads a label file in the Kaggle format (header Id,Target; Target space-separated
// class ids 0..27) and checks every row: malformed CSV, unknown or repeated class ids, an Id twice
// in the file, an Id whose four channel images are not all under the image prefix. Any fault
// rejects the whole file with a *LabelFileError listing every row at fault.
func ParseLabelFile(key, etag string, data []byte, images ImageIndex) ([]Row, error) {
	var rows []Row
	var bad []RowError
	seen := map[string]int{}
	add := func(e RowError) {
		if len(bad) < maxRowErrors {
			bad = append(bad, e)
		}
	}
	err := labels.ReadIDColumn(bytes.NewReader(data), "Target", func(line int, id, value string) error {
		if prev, dup := seen[id]; dup {
			add(RowError{Line: line, ID: id, Reason: fmt.Sprintf("Id repeated (first on line %d)", prev)})
			return nil
		}
		seen[id] = line
		if !validID(id) {
			add(RowError{Line: line, ID: id, Reason: "Id must be one key segment (no '/', no spaces)"})
			return nil
		}
		var have [labels.NumClasses]bool
		targets := []int{}
		ok := true
		for _, f := range strings.Fields(value) {
			c, err := strconv.Atoi(f)
			switch {
			case err != nil:
				add(RowError{Line: line, ID: id, Reason: fmt.Sprintf("class id %q is not an integer", f)})
				ok = false
			case c < 0 || c >= labels.NumClasses:
				add(RowError{Line: line, ID: id, Reason: fmt.Sprintf("unknown class id %d (want 0..%d)", c, labels.NumClasses-1)})
				ok = false
			case have[c]:
				add(RowError{Line: line, ID: id, Reason: fmt.Sprintf("class id %d repeated", c)})
				ok = false
			default:
				have[c] = true
				targets = append(targets, c)
			}
		}
		if images != nil {
			if _, _, missing := images.Channels(id); len(missing) > 0 {
				add(RowError{Line: line, ID: id, Reason: "missing images: " + strings.Join(missing, ", ")})
				ok = false
			}
		}
		if ok {
			rows = append(rows, Row{ID: id, Targets: targets})
		}
		return nil
	})
	if err != nil {
		var ce *labels.CSVError
		re := RowError{Reason: err.Error()}
		if errors.As(err, &ce) {
			re = RowError{Line: ce.Line, Reason: ce.Reason}
		}
		bad = append(bad, re)
	}
	if len(bad) == 0 && len(rows) == 0 {
		bad = append(bad, RowError{Reason: "no labeled rows"})
	}
	if len(bad) > 0 {
		reason := fmt.Sprintf("%d row(s) rejected; first: ", len(bad))
		if bad[0].Line > 0 {
			reason += "line " + strconv.Itoa(bad[0].Line) + ": "
		}
		reason += bad[0].Reason
		return nil, &LabelFileError{Schema: LabelErrorSchema, Object: key, ETag: etag, Kind: KindLabels, Reason: reason, Rows: bad}
	}
	return rows, nil
}

func validID(id string) bool {
	return id != "" && id != "." && id != ".." && !strings.ContainsAny(id, "/\\ \t\r\n")
}

// IsLabelFile reports whether key is a label file below prefix (a .csv, not an error record).
func IsLabelFile(prefix, key string) bool {
	return strings.HasPrefix(key, prefix) && strings.HasSuffix(strings.ToLower(key), ".csv")
}

// ErrorKey is where the error record of label file key goes.
func ErrorKey(key string) string { return key + ".error.json" }

// channelIndex indexes a listing of the image prefix: {Id}_{red,green,blue,yellow}.<ext>.
type channelIndex struct {
	keys  map[string][4]string
	etags map[string][4]string
}

// newChannelIndex indexes objects (key, etag) whose base names are channel images.
func newChannelIndex(objs map[string]string) *channelIndex {
	ix := &channelIndex{keys: map[string][4]string{}, etags: map[string][4]string{}}
	for key, etag := range objs {
		id, ch, _, ok := pipeline.ParseName(path.Base(key))
		if !ok {
			continue
		}
		k, e := ix.keys[id], ix.etags[id]
		if k[ch] != "" && k[ch] < key { // several formats of one channel: the first key wins
			continue
		}
		k[ch], e[ch] = key, etag
		ix.keys[id], ix.etags[id] = k, e
	}
	return ix
}

func (ix *channelIndex) Channels(id string) (keys, etags [4]string, missing []string) {
	keys, etags = ix.keys[id], ix.etags[id]
	for c, k := range keys {
		if k == "" {
			missing = append(missing, pipeline.Channel(c).String())
		}
	}
	return keys, etags, missing
}
