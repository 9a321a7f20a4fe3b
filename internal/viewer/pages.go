package viewer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// page is what every template gets.
type page struct {
	Title string
	Page  string // plates | plate | sample | models
	Plate string // the plate a live page follows ("" = all)
	Data  any
}

// plateRow is one line of the plate list.
type plateRow struct {
	Name, URL                                     string
	Samples, Labeled, Failed, Incomplete, Pending int
	Versions                                      []string
	Updated                                       time.Time
}

// card is one sample of a plate grid.
type card struct {
	ID, URL, Status string
	ThumbURL        string // "" when no composite can be made (placeholder shown)
	Alt             string
	Predicted       []classRef
	Confidence      float64
	HasConfidence   bool
	ModelVersion    string
	ErrorKind       string
	Missing         []string
}

type classRef struct {
	ID   int
	Name string
}

// filter selects the cards of a plate page.
type filter struct {
	Class          int // -1: any
	Status         string
	MinConf        float64
	MaxConf        float64
	HasMin, HasMax bool
}

func (f filter) Active() bool { return f.Class >= 0 || f.Status != "" || f.HasMin || f.HasMax }

// query encodes the filter as URL parameters.
func (f filter) Query() url.Values {
	q := url.Values{}
	if f.Class >= 0 {
		q.Set("class", strconv.Itoa(f.Class))
	}
	if f.Status != "" {
		q.Set("status", f.Status)
	}
	if f.HasMin {
		q.Set("min", strconv.FormatFloat(f.MinConf, 'f', -1, 64))
	}
	if f.HasMax {
		q.Set("max", strconv.FormatFloat(f.MaxConf, 'f', -1, 64))
	}
	return q
}

func parseFilter(q url.Values) (filter, error) {
	f := filter{Class: -1}
	if s := q.Get("class"); s != "" {
		k, err := strconv.Atoi(s)
		if err != nil || k < 0 || k >= labels.NumClasses {
			return f, fmt.Errorf("class %q: want a class id 0..%d", s, labels.NumClasses-1)
		}
		f.Class = k
	}
	switch s := q.Get("status"); s {
	case "", StatusLabeled, StatusFailed, StatusIncomplete, StatusPending:
		f.Status = s
	default:
		return f, fmt.Errorf("status %q: want labeled, failed, incomplete or pending", s)
	}
	num := func(name string, dst *float64, has *bool) error {
		s := q.Get(name)
		if s == "" {
			return nil
		}
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || x < 0 || x > 1 {
			return fmt.Errorf("%s %q: want a number in [0, 1]", name, s)
		}
		*dst, *has = x, true
		return nil
	}
	if err := num("min", &f.MinConf, &f.HasMin); err != nil {
		return f, err
	}
	return f, num("max", &f.MaxConf, &f.HasMax)
}

// matches applies the filter. The confidence of a sample is the probability of the filtered class
// when a class is chosen, else the highest probability among its predicted classes. Confidence
// bounds leave out samples without a label.
func (f filter) matches(status string, sum *labelSummary) bool {
	if f.Status != "" && status != f.Status {
		return false
	}
	labeled := status == StatusLabeled && sum != nil && sum.Bad == "" && sum.ErrorKind == ""
	if f.Class >= 0 && (!labeled || !slices.Contains(sum.Predicted, f.Class)) {
		return false
	}
	if f.HasMin || f.HasMax {
		if !labeled {
			return false
		}
		c := sum.confidence()
		if f.Class >= 0 {
			c = sum.Probs[f.Class]
		}
		if (f.HasMin && c < f.MinConf) || (f.HasMax && c > f.MaxConf) {
			return false
		}
	}
	return true
}

func plateURL(plate string) string { return "/plates/" + url.PathEscape(plate) }
func sampleURL(plate, id string) string {
	return plateURL(plate) + "/samples/" + url.PathEscape(id)
}
func imageURL(plate, id, size, kind, version string) string {
	return "/img/" + url.PathEscape(plate) + "/" + url.PathEscape(id) + "/" + size + "/" + kind + "?v=" + version
}

// httpError writes a plain error page for err.
func (v *Viewer) httpError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusBadGateway
	switch {
	case errors.Is(err, errBadName):
		code = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return
	}
	var ie *imageError
	if errors.As(err, &ie) {
		code = http.StatusUnprocessableEntity
	}
	if code >= 500 {
		v.log.Warn("viewer", "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, err.Error(), code)
}

// render executes a page template into a buffer first, so a failing template is a clean 500.
func (v *Viewer) render(w http.ResponseWriter, name, block string, p page) {
	var buf bytes.Buffer
	if err := v.tmpl[name].ExecuteTemplate(&buf, block, p); err != nil {
		v.log.Error("viewer: template", "page", name, "err", err)
		http.Error(w, "template error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// plateRows summarizes every plate, most recently active first.
func (v *Viewer) plateRows(ctx context.Context) ([]plateRow, error) {
	plates, err := v.idx.plates(ctx)
	if err != nil {
		return nil, err
	}
	byKey := map[string]*labelSummary{}
	for _, p := range plates {
		if ctx.Err() != nil {
			break
		}
		var labels []Object
		for _, s := range p.Samples {
			if s.Label.Key != "" {
				labels = append(labels, s.Label)
			}
		}
		for i, sum := range v.plateSummaries(ctx, p.Name, labels) {
			byKey[labels[i].Key] = sum
		}
	}
	rows := make([]plateRow, 0, len(plates))
	for _, p := range plates {
		row := plateRow{Name: p.Name, URL: plateURL(p.Name), Samples: len(p.Samples), Updated: p.CSV.Modified}
		var ps []*labelSummary
		for _, s := range p.Samples {
			switch s.status() {
			case StatusLabeled:
				row.Labeled++
				ps = append(ps, byKey[s.Label.Key])
			case StatusFailed:
				row.Failed++
			case StatusIncomplete:
				row.Incomplete++
			case StatusPending:
				row.Pending++
			}
			if t := s.updated(); t.After(row.Updated) {
				row.Updated = t
			}
		}
		row.Versions = sortedVersions(ps)
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, j int) bool {
		if !rows[i].Updated.Equal(rows[j].Updated) {
			return rows[i].Updated.After(rows[j].Updated)
		}
		return rows[i].Name < rows[j].Name
	})
	return rows, nil
}

// servePlates is GET /: the plate list (?fragment=rows: only the table rows, for live updates).
func (v *Viewer) servePlates(w http.ResponseWriter, r *http.Request) {
	rows, err := v.plateRows(r.Context())
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	p := page{Title: "Plates", Page: "plates", Data: rows}
	if r.URL.Query().Get("fragment") == "rows" {
		v.render(w, "plates", "rows", p)
		return
	}
	v.render(w, "plates", "layout", p)
}

// pathNames reads and validates the plate (and sample id) of a request.
func pathNames(r *http.Request) (plate, id string, err error) {
	plate = r.PathValue("plate")
	if err := checkName(plate, true); err != nil {
		return "", "", err
	}
	if id = r.PathValue("id"); id != "" || strings.Contains(r.Pattern, "{id}") {
		if err := checkName(id, false); err != nil {
			return "", "", err
		}
	}
	return plate, id, nil
}

// loadPlate returns a plate's listing; a plate without objects is ErrNotFound.
func (v *Viewer) loadPlate(ctx context.Context, plate string) (*plateObjects, error) {
	p, err := v.idx.plate(ctx, plate)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("plate %q: %w", plate, ErrNotFound)
	}
	return p, nil
}

// loadSample returns a plate's listing and one of its samples; an unknown one is ErrNotFound.
func (v *Viewer) loadSample(ctx context.Context, plate, id string) (*plateObjects, *sampleObjects, error) {
	p, err := v.loadPlate(ctx, plate)
	if err != nil {
		return nil, nil, err
	}
	s := p.Samples[id]
	if s == nil {
		return nil, nil, fmt.Errorf("sample %q: %w", id, ErrNotFound)
	}
	return p, s, nil
}

// makeCard builds the grid card of sample s (sum: its label or error summary, may be nil).
func makeCard(plate string, s *sampleObjects, sum *labelSummary) card {
	c := card{ID: s.ID, URL: sampleURL(plate, s.ID), Status: s.status()}
	for ch, o := range s.Channels {
		if o.Key == "" {
			c.Missing = append(c.Missing, pipeline.ChannelNames[ch])
		}
	}
	if s.complete() && c.Status != StatusFailed {
		c.ThumbURL = imageURL(plate, s.ID, SizeThumb, KindComposite, s.version())
	}
	switch c.Status {
	case StatusLabeled:
		if sum != nil && sum.Bad == "" && sum.ErrorKind == "" {
			for _, k := range sum.Predicted {
				c.Predicted = append(c.Predicted, classRef{k, labels.ClassNames[k]})
			}
			c.Confidence, c.HasConfidence = sum.confidence(), true
			c.ModelVersion = sum.ModelVersion
			names := make([]string, len(c.Predicted))
			for i, p := range c.Predicted {
				names[i] = p.Name
			}
			pred := "no class predicted"
			if len(names) > 0 {
				pred = "predicted " + strings.Join(names, ", ")
			}
			c.Alt = fmt.Sprintf("Composite of sample %s: %s", s.ID, pred)
		} else {
			c.ErrorKind = "unreadable label"
			c.Alt = fmt.Sprintf("Composite of sample %s (label unreadable)", s.ID)
		}
	case StatusFailed:
		c.ErrorKind = "error"
		if sum != nil && sum.ErrorKind != "" {
			c.ErrorKind = sum.ErrorKind
		}
		c.Alt = fmt.Sprintf("Sample %s failed: %s", s.ID, c.ErrorKind)
	case StatusIncomplete:
		c.Alt = fmt.Sprintf("Sample %s is incomplete: %s missing", s.ID, strings.Join(c.Missing, ", "))
	case StatusPending:
		c.Alt = fmt.Sprintf("Composite of sample %s (being labeled)", s.ID)
	}
	return c
}

// result returns the record object that decides s's status (label or error record).
func (s *sampleObjects) result() Object {
	switch s.status() {
	case StatusLabeled:
		return s.Label
	case StatusFailed:
		return s.Error
	}
	return Object{}
}

type plateData struct {
	Name, URL, CSVURL string
	Counts            plateRow
	Cards             []template.HTML
	Shown, Total      int
	Filter            filter
	Classes           []classRef
	Statuses          []string
	Page, Pages       int
	PrevURL, NextURL  string
	Versions          []string
}

// match is a sample a filter selected, with its label or error summary (may be nil).
type match struct {
	s   *sampleObjects
	sum *labelSummary
}

// plateCards summarizes a plate and returns the samples the filter selects, in natural order.
func (v *Viewer) plateCards(ctx context.Context, p *plateObjects, f filter) (plateRow, []match, []string) {
	ids := p.sortedIDs()
	objs := make([]Object, 0, len(ids))
	idx := make([]int, len(ids))
	for i, id := range ids {
		idx[i] = -1
		if o := p.Samples[id].result(); o.Key != "" {
			idx[i] = len(objs)
			objs = append(objs, o)
		}
	}
	sums := v.plateSummaries(ctx, p.Name, objs)
	counts := plateRow{Name: p.Name, Samples: len(ids), Updated: p.CSV.Modified}
	var out []match
	var labeled []*labelSummary
	for i, id := range ids {
		s := p.Samples[id]
		var sum *labelSummary
		if idx[i] >= 0 {
			sum = sums[idx[i]]
		}
		st := s.status()
		switch st {
		case StatusLabeled:
			counts.Labeled++
			labeled = append(labeled, sum)
		case StatusFailed:
			counts.Failed++
		case StatusIncomplete:
			counts.Incomplete++
		case StatusPending:
			counts.Pending++
		}
		if t := s.updated(); t.After(counts.Updated) {
			counts.Updated = t
		}
		if f.matches(st, sum) {
			out = append(out, match{s, sum})
		}
	}
	return counts, out, sortedVersions(labeled)
}

// maxCards bounds the rendered-card cache.
const maxCards = 100_000

// cardHTML renders the grid card of a sample, cached by everything it shows: the plate, the
// sample, its status, the version of its channel objects and its label or error record's ETag.
func (v *Viewer) cardHTML(plate string, m match) (template.HTML, error) {
	key := plate + "\x00" + m.s.ID + "\x00" + m.s.status() + "\x00" + m.s.version() + "\x00" + m.s.result().ETag
	if m.sum != nil && m.sum.transient {
		key = "" // an unread record: render, do not keep
	}
	v.cardsMu.Lock()
	h, ok := v.cards[key]
	v.cardsMu.Unlock()
	if ok && key != "" {
		return h, nil
	}
	var buf bytes.Buffer
	if err := v.tmpl["plate"].ExecuteTemplate(&buf, "card", makeCard(plate, m.s, m.sum)); err != nil {
		return "", err
	}
	h = template.HTML(buf.String()) // html/template's output: escaped
	if key != "" {
		v.cardsMu.Lock()
		if len(v.cards) >= maxCards {
			clear(v.cards)
		}
		v.cards[key] = h
		v.cardsMu.Unlock()
	}
	return h, nil
}

// servePlate is GET /plates/{plate}: the sample grid.
func (v *Viewer) servePlate(w http.ResponseWriter, r *http.Request) {
	plate, _, err := pathNames(r)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pn := 1
	if s := r.URL.Query().Get("page"); s != "" {
		if pn, err = strconv.Atoi(s); err != nil || pn < 1 {
			http.Error(w, "page: want a positive integer", http.StatusBadRequest)
			return
		}
	}
	p, err := v.loadPlate(r.Context(), plate)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	counts, matches, versions := v.plateCards(r.Context(), p, f)
	d := plateData{Name: plate, URL: plateURL(plate), Counts: counts, Total: len(matches), Filter: f, Versions: versions,
		Statuses: []string{StatusLabeled, StatusFailed, StatusIncomplete, StatusPending}}
	if p.CSV.Key != "" {
		d.CSVURL = plateURL(plate) + "/submission.csv"
	}
	for k, n := range labels.ClassNames {
		d.Classes = append(d.Classes, classRef{k, n})
	}
	d.Pages = max(1, (len(matches)+v.cfg.PageSize-1)/v.cfg.PageSize)
	d.Page = min(pn, d.Pages)
	lo, hi := (d.Page-1)*v.cfg.PageSize, min(len(matches), d.Page*v.cfg.PageSize)
	for _, m := range matches[lo:hi] {
		h, err := v.cardHTML(plate, m)
		if err != nil {
			v.log.Error("viewer: template", "page", "card", "err", err)
			http.Error(w, "template error", http.StatusInternalServerError)
			return
		}
		d.Cards = append(d.Cards, h)
	}
	d.Shown = len(d.Cards)
	pageURL := func(n int) string {
		q := f.Query()
		q.Set("page", strconv.Itoa(n))
		return plateURL(plate) + "?" + q.Encode()
	}
	if d.Page > 1 {
		d.PrevURL = pageURL(d.Page - 1)
	}
	if d.Page < d.Pages {
		d.NextURL = pageURL(d.Page + 1)
	}
	v.render(w, "plate", "layout", page{Title: plate, Page: "plate", Plate: plate, Data: d})
}

// serveCard is GET /plates/{plate}/cards/{id}?<filter>: one grid card and the plate's counts, as
// JSON, for live updates: {"id","html","matches","counts":{...}}.
func (v *Viewer) serveCard(w http.ResponseWriter, r *http.Request) {
	plate, id, err := pathNames(r)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p, s, err := v.loadSample(r.Context(), plate, id)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	counts, _, _ := v.plateCards(r.Context(), p, filter{Class: -1})
	var sum *labelSummary
	if o := s.result(); o.Key != "" {
		sum = v.sums.get(r.Context(), []Object{o})[0]
	}
	h, err := v.cardHTML(plate, match{s, sum})
	if err != nil {
		http.Error(w, "template error", http.StatusInternalServerError)
		return
	}
	// The sample's position in the sorted plate, so the page inserts a new card in order.
	ids := p.sortedIDs()
	next := ""
	if i := slices.Index(ids, id); i >= 0 && i+1 < len(ids) {
		next = ids[i+1]
	}
	writeJSON(w, map[string]any{
		"id": id, "html": string(h), "matches": f.matches(s.status(), sum), "before": next,
		"counts": map[string]int{"samples": counts.Samples, "labeled": counts.Labeled, "failed": counts.Failed,
			"incomplete": counts.Incomplete, "pending": counts.Pending},
	})
}

// serveCSV is GET /plates/{plate}/submission.csv: the plate's Kaggle CSV as the consumer wrote it.
func (v *Viewer) serveCSV(w http.ResponseWriter, r *http.Request) {
	plate, _, err := pathNames(r)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	key := v.cfg.LabelsPrefix + plate + "/submission.csv"
	if err := keyUnder(key, v.cfg.LabelsPrefix); err != nil {
		v.httpError(w, r, err)
		return
	}
	b, err := v.store.Get(r.Context(), key, 256<<20)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	name := strings.NewReplacer("/", "_", `"`, "_").Replace(plate)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-submission.csv"; filename*=UTF-8''%s`,
		asciiName(name), url.PathEscape(name+"-submission.csv")))
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// asciiName keeps a file name's printable ASCII letters, digits, '-', '_' and '.'.
func asciiName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 128 && (r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// serveImage is GET /img/{plate}/{id}/{size}/{kind}?v=<version>: a composite or channel image
// (size thumb or view). Versioned URLs are cached by the browser for a year (the version changes
// with the channel objects); the image itself comes from the thumbnail cache in S3 or is rendered.
func (v *Viewer) serveImage(w http.ResponseWriter, r *http.Request) {
	plate, id, err := pathNames(r)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	size, kind := r.PathValue("size"), r.PathValue("kind")
	if size != SizeThumb && size != SizeView {
		http.Error(w, "size: want thumb or view", http.StatusNotFound)
		return
	}
	if !slices.Contains(imageKinds[:], kind) || (size == SizeThumb && kind != KindComposite) {
		http.Error(w, "unknown image kind", http.StatusNotFound)
		return
	}
	_, s, err := v.loadSample(r.Context(), plate, id)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	ver := s.version()
	etag := `"` + ver + "-" + size + "-" + kind + `"`
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	b, err := v.thumbs.image(r.Context(), plate, s, kind, size)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/png")
	h.Set("ETag", etag)
	if r.URL.Query().Get("v") == ver {
		h.Set("Cache-Control", "private, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "private, no-cache")
	}
	_, _ = w.Write(b)
}
