package viewer

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// panel is one image of the sample page.
type panel struct {
	Kind, Title, Stain, URL, Alt string
	Missing                      bool
}

// bar is one class of the probability chart.
type bar struct {
	ID                int
	Name              string
	P, Threshold      float64
	Predicted         bool
	Y, W, TX, TextY   float64 // chart geometry (SVG user units)
	PText, ThreshText string
}

// chart geometry of the probability bars.
const (
	chartLabelW = 230.0
	chartBarW   = 330.0
	chartRowH   = 20.0
	chartWidth  = chartLabelW + chartBarW + 70
)

type sampleData struct {
	Plate, PlateURL, ID, Status string
	Panels                      []panel
	Label                       *labels.Label
	Error                       *labels.ErrorRecord
	Bad                         string
	Bars                        []bar
	ChartW, ChartH, BarX        float64
	Ticks                       []tick
	Predicted                   []classRef
	Channels                    []channelRow
	PrevURL, NextURL, RecordURL string
	Pos, Count                  int
}

type tick struct {
	X     float64
	Label string
}

type channelRow struct {
	Channel, Key, ETag string
	Size               int64
}

var stains = [4]string{"microtubules", "protein of interest", "nucleus", "endoplasmic reticulum"}

// serveSample is GET /plates/{plate}/samples/{id}.
func (v *Viewer) serveSample(w http.ResponseWriter, r *http.Request) {
	plate, id, err := pathNames(r)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	p, s, err := v.loadSample(r.Context(), plate, id)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	d := sampleData{Plate: plate, PlateURL: plateURL(plate), ID: id, Status: s.status(), ChartW: chartWidth, BarX: chartLabelW}
	ids := p.sortedIDs()
	i := slices.Index(ids, id)
	d.Pos, d.Count = i+1, len(ids)
	if i > 0 {
		d.PrevURL = sampleURL(plate, ids[i-1])
	}
	if i+1 < len(ids) {
		d.NextURL = sampleURL(plate, ids[i+1])
	}
	ver := s.version()
	complete := s.complete()
	d.Panels = append(d.Panels, panel{Kind: KindComposite, Title: "Composite", Stain: "all four stains",
		Missing: !complete, Alt: fmt.Sprintf("Composite of sample %s: green protein, blue nucleus, red microtubules, yellow ER", id)})
	for c := range 4 {
		o := s.Channels[c]
		d.Panels = append(d.Panels, panel{Kind: pipeline.ChannelNames[c], Title: pipeline.ChannelNames[c], Stain: stains[c],
			Missing: o.Key == "", Alt: fmt.Sprintf("%s channel (%s) of sample %s", pipeline.ChannelNames[c], stains[c], id)})
		if o.Key != "" {
			d.Channels = append(d.Channels, channelRow{Channel: pipeline.ChannelNames[c], Key: o.Key, ETag: o.ETag, Size: o.Size})
		}
	}
	for k := range d.Panels {
		if !d.Panels[k].Missing {
			d.Panels[k].URL = imageURL(plate, id, SizeView, d.Panels[k].Kind, ver)
		}
	}
	if o := s.result(); o.Key != "" {
		d.RecordURL = sampleURL(plate, id) + "/record.json"
		b, err := v.store.Get(r.Context(), o.Key, maxRecordBytes)
		switch {
		case err != nil:
			d.Bad = err.Error()
		case d.Status == StatusLabeled:
			l, err := labels.ParseLabel(b)
			if err != nil {
				d.Bad = err.Error()
				break
			}
			d.Label = &l
			v.fillChart(&d)
		default:
			e, err := labels.ParseErrorRecord(b)
			if err != nil {
				d.Bad = err.Error()
				break
			}
			d.Error = &e
		}
	}
	v.render(w, "sample", "layout", page{Title: id + " · " + plate, Page: "sample", Plate: plate, Data: d})
}

func (v *Viewer) fillChart(d *sampleData) {
	l := d.Label
	pred := l.PredictedIDs()
	for _, k := range pred {
		d.Predicted = append(d.Predicted, classRef{k, labels.ClassNames[k]})
	}
	for k, c := range l.Probabilities {
		b := bar{ID: k, Name: c.Name, P: float64(c.P), Predicted: slices.Contains(pred, k)}
		if k < len(l.Thresholds.Values) {
			b.Threshold = l.Thresholds.Values[k]
		}
		b.Y = float64(k)*chartRowH + 4
		b.TextY = b.Y + 12
		b.W = chartBarW * b.P
		b.TX = chartLabelW + chartBarW*b.Threshold
		b.PText = strconv.FormatFloat(b.P, 'f', 3, 64)
		b.ThreshText = strconv.FormatFloat(b.Threshold, 'f', 3, 64)
		d.Bars = append(d.Bars, b)
	}
	d.ChartH = float64(len(d.Bars))*chartRowH + 24
	for _, t := range []float64{0, 0.25, 0.5, 0.75, 1} {
		d.Ticks = append(d.Ticks, tick{X: chartLabelW + chartBarW*t, Label: strconv.FormatFloat(t, 'f', -1, 64)})
	}
}

// serveRecord is GET /plates/{plate}/samples/{id}/record.json: the label or error JSON as stored.
func (v *Viewer) serveRecord(w http.ResponseWriter, r *http.Request) {
	plate, id, err := pathNames(r)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	_, s, err := v.loadSample(r.Context(), plate, id)
	if err == nil && s.result().Key == "" {
		err = fmt.Errorf("no label or error record for %q: %w", id, ErrNotFound)
	}
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	key := s.result().Key
	if err := keyUnder(key, v.cfg.LabelsPrefix); err != nil {
		v.httpError(w, r, err)
		return
	}
	b, err := v.store.Get(r.Context(), key, maxRecordBytes)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}
