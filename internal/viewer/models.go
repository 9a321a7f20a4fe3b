package viewer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/runs"
	"github.com/hpa-plates/hpa/internal/train/eval"
)

// modelFileNames are the files of a model set the viewer reads or serves (fixed names, beside
// the manifest, as `hpa train` writes them).
var modelFileNames = map[string]string{
	"manifest.json": "application/json", "report.json": "application/json", "curves.png": "image/png",
}

const maxModelFileBytes = 16 << 20

// modelDir reads files of the model set at a location: a manifest path or a directory on this
// machine, or s3://<bucket>/<prefix> in the viewer's bucket.
type modelDir struct {
	location string
	read     func(ctx context.Context, name string) ([]byte, error)
}

func (v *Viewer) openModelDir(location string) (*modelDir, error) {
	if rest, ok := strings.CutPrefix(location, "s3://"); ok {
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket != v.cfg.Bucket {
			return nil, fmt.Errorf("model location %s is in bucket %q; the viewer reads bucket %q", location, bucket, v.cfg.Bucket)
		}
		prefix = strings.TrimSuffix(prefix, "manifest.json")
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		return &modelDir{location: location, read: func(ctx context.Context, name string) ([]byte, error) {
			key := prefix + name
			if err := keyUnder(key, prefix); err != nil {
				return nil, err
			}
			return v.store.Get(ctx, key, maxModelFileBytes)
		}}, nil
	}
	dir := location
	if strings.HasSuffix(location, ".json") {
		dir = filepath.Dir(location)
	}
	return &modelDir{location: location, read: func(_ context.Context, name string) ([]byte, error) {
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return io.ReadAll(io.LimitReader(f, maxModelFileBytes))
	}}, nil
}

// modelSummary is a model set as the models page shows it.
type modelSummary struct {
	Location  string
	Manifest  *model.Manifest
	Digest    string
	Report    *eval.Report
	HasCurves bool
	CurvesURL string
	Err       string
	Current   bool
}

// readModel reads a model set's manifest (and report, when withReport).
func (v *Viewer) readModel(ctx context.Context, md *modelDir, withReport bool) modelSummary {
	s := modelSummary{Location: md.location}
	b, err := md.read(ctx, "manifest.json")
	if err != nil {
		s.Err = "manifest: " + err.Error()
		return s
	}
	m, err := model.ParseManifest(b, md.location)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	s.Manifest = m
	s.Digest, _ = m.Digest()
	if !withReport {
		return s
	}
	report := "report.json"
	if m.Report != "" && filepath.Base(m.Report) == m.Report && strings.HasSuffix(m.Report, ".json") {
		report = m.Report
	}
	if b, err := md.read(ctx, report); err == nil {
		var r eval.Report
		if json.Unmarshal(b, &r) == nil {
			s.Report = &r
		}
	}
	if _, err := md.read(ctx, "curves.png"); err == nil {
		s.HasCurves = true
	}
	return s
}

type runView struct {
	*runs.Run
	Key       string
	Err       string
	Report    *eval.Report
	CurvesURL string
}

type decisionView struct {
	*runs.Decision
	Key string
	Err string
}

type modelsData struct {
	Current      *modelSummary
	CurrentErr   string
	Sets         []modelSummary
	SetsErr      string
	Runs         []runView
	RunsErr      string
	Decisions    []decisionView
	DecisionsErr string
	ModelsPrefix string
	RunsPrefix   string
}

// newest returns up to n objects below prefix whose key ends in suffix, newest first.
func (v *Viewer) newest(ctx context.Context, prefix, suffix string, n int, keep func(rel string) bool) ([]Object, error) {
	objs, err := v.store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var out []Object
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Key, prefix)
		if strings.HasSuffix(rel, suffix) && (keep == nil || keep(rel)) {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Modified.Equal(out[j].Modified) {
			return out[i].Modified.After(out[j].Modified)
		}
		return out[i].Key > out[j].Key
	})
	return out[:min(len(out), n)], nil
}

// parallel runs f(i) for i < n with at most ReadWorkers at once.
func (v *Viewer) parallel(n int, f func(i int)) {
	sem := make(chan struct{}, v.cfg.ReadWorkers)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() { defer func() { <-sem; wg.Done() }(); f(i) }()
	}
	wg.Wait()
}

// serveModels is GET /models: the serving model set, the model sets in S3, training runs and
// promotion decisions (internal/runs records).
func (v *Viewer) serveModels(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := modelsData{ModelsPrefix: v.cfg.ModelsPrefix, RunsPrefix: v.cfg.RunsPrefix}
	var wg sync.WaitGroup
	wg.Add(4)
	go func() {
		defer wg.Done()
		if v.cfg.Model == nil {
			return
		}
		loc, err := v.cfg.Model(ctx)
		if err != nil {
			d.CurrentErr = err.Error()
			return
		}
		md, err := v.openModelDir(loc)
		if err != nil {
			d.CurrentErr = err.Error()
			return
		}
		s := v.readModel(ctx, md, true)
		s.CurvesURL = "/models/current/curves.png"
		d.Current = &s
	}()
	go func() {
		defer wg.Done()
		objs, err := v.newest(ctx, v.cfg.ModelsPrefix, "/manifest.json", v.cfg.MaxModels, func(rel string) bool {
			return strings.Count(rel, "/") == 1 && runs.CheckName(strings.TrimSuffix(rel, "/manifest.json")) == nil
		})
		if err != nil {
			d.SetsErr = err.Error()
			return
		}
		d.Sets = make([]modelSummary, len(objs))
		v.parallel(len(objs), func(i int) {
			version := strings.TrimSuffix(strings.TrimPrefix(objs[i].Key, v.cfg.ModelsPrefix), "/manifest.json")
			md, _ := v.openModelDir("s3://" + v.cfg.Bucket + "/" + v.cfg.ModelsPrefix + version + "/")
			d.Sets[i] = v.readModel(ctx, md, false)
			d.Sets[i].Location = version
			d.Sets[i].CurvesURL = "/models/v/" + version + "/curves.png"
		})
	}()
	go func() {
		defer wg.Done()
		objs, err := v.newest(ctx, v.cfg.RunsPrefix, ".json", v.cfg.MaxRuns, func(rel string) bool { return !strings.Contains(rel, "/") })
		if err != nil {
			d.RunsErr = err.Error()
			return
		}
		d.Runs = make([]runView, len(objs))
		v.parallel(len(objs), func(i int) {
			d.Runs[i] = v.readRun(ctx, objs[i].Key, i < 5)
		})
	}()
	go func() {
		defer wg.Done()
		prefix := v.cfg.ModelsPrefix + runs.DecisionsDir
		objs, err := v.store.List(ctx, prefix)
		if err != nil {
			d.DecisionsErr = err.Error()
			return
		}
		// Keys start with the decision time: newest last in key order.
		sort.Slice(objs, func(i, j int) bool { return objs[i].Key > objs[j].Key })
		objs = objs[:min(len(objs), v.cfg.MaxRuns)]
		d.Decisions = make([]decisionView, len(objs))
		v.parallel(len(objs), func(i int) {
			d.Decisions[i].Key = objs[i].Key
			b, err := v.store.Get(ctx, objs[i].Key, maxRecordBytes)
			if err == nil {
				d.Decisions[i].Decision, err = runs.ParseDecision(b, objs[i].Key)
			}
			if err != nil {
				d.Decisions[i].Err = err.Error()
			}
		})
	}()
	wg.Wait()
	if d.Current != nil && d.Current.Manifest != nil {
		for i := range d.Sets {
			d.Sets[i].Current = d.Sets[i].Digest != "" && d.Sets[i].Digest == d.Current.Digest
		}
	}
	v.render(w, "models", "layout", page{Title: "Models", Page: "models", Data: d})
}

// readRun reads a run record and, when withReport, its candidate's report.
func (v *Viewer) readRun(ctx context.Context, key string, withReport bool) runView {
	rv := runView{Key: key}
	b, err := v.store.Get(ctx, key, maxRecordBytes)
	if err == nil {
		rv.Run, err = runs.ParseRun(b, key)
	}
	if err != nil {
		rv.Err = err.Error()
		return rv
	}
	if rv.Curves != "" && keyUnder(rv.Curves, v.cfg.ModelsPrefix, v.cfg.RunsPrefix) == nil {
		rv.CurvesURL = "/runs/" + rv.ID + "/curves.png"
	}
	if withReport && rv.Run.Report != "" && keyUnder(rv.Run.Report, v.cfg.ModelsPrefix, v.cfg.RunsPrefix) == nil {
		if b, err := v.store.Get(ctx, rv.Run.Report, maxModelFileBytes); err == nil {
			var r eval.Report
			if json.Unmarshal(b, &r) == nil {
				rv.Report = &r
			}
		}
	}
	return rv
}

func serveBytes(w http.ResponseWriter, b []byte, contentType string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "private, no-cache")
	_, _ = w.Write(b)
}

// serveCurrentModelFile is GET /models/current/{file}: manifest.json, report.json or curves.png of
// the serving model set.
func (v *Viewer) serveCurrentModelFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	ct, ok := modelFileNames[name]
	if !ok || v.cfg.Model == nil {
		http.NotFound(w, r)
		return
	}
	loc, err := v.cfg.Model(r.Context())
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	md, err := v.openModelDir(loc)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	b, err := md.read(r.Context(), name)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	serveBytes(w, b, ct)
}

// serveModelFile is GET /models/v/{version}/{file}: a file of models/<version>/ in S3.
func (v *Viewer) serveModelFile(w http.ResponseWriter, r *http.Request) {
	version, name := r.PathValue("version"), r.PathValue("file")
	ct, ok := modelFileNames[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if err := runs.CheckName(version); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key := v.cfg.ModelsPrefix + version + "/" + name
	if err := keyUnder(key, v.cfg.ModelsPrefix); err != nil {
		v.httpError(w, r, err)
		return
	}
	b, err := v.store.Get(r.Context(), key, maxModelFileBytes)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	serveBytes(w, b, ct)
}

// serveRunFile is GET /runs/{id}/curves.png: the curves a run record names.
func (v *Viewer) serveRunFile(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if r.PathValue("file") != "curves.png" {
		http.NotFound(w, r)
		return
	}
	if err := runs.CheckName(id); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rv := v.readRun(r.Context(), runs.RunKey(v.cfg.RunsPrefix, id), false)
	if rv.Err != "" || rv.CurvesURL == "" {
		http.NotFound(w, r)
		return
	}
	b, err := v.store.Get(r.Context(), rv.Curves, maxModelFileBytes)
	if err != nil {
		v.httpError(w, r, err)
		return
	}
	serveBytes(w, b, "image/png")
}
