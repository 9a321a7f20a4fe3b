package training

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/runs"
)

// GuardConfig is the promotion guard: promote only if the candidate's macro-F1 is at least the
// production model's minus Tolerance and no class with at least MinPositives positives loses more
// than ClassDrop F1.
type GuardConfig struct {
	Tolerance    float64
	ClassDrop    float64
	MinPositives int
}

// DefaultGuard is the guard: 0.005 macro-F1, 0.05 per class for classes with >= 20 positives.
func DefaultGuard() GuardConfig {
	return GuardConfig{Tolerance: 0.005, ClassDrop: 0.05, MinPositives: 20}
}

// Scores are a model set's scores on an evaluation set.
type Scores struct {
	MacroF1  float64
	PerClass []ClassScore // by class id
	Samples  int
}

// ClassScore is one class's F1 and positive count.
type ClassScore struct {
	F1        float64
	Positives int
}

// Scorer scores the production model set for the guard. ScoreProduction gets the location of the
// production set and the dataset the candidate's out-of-fold predictions were scored on.
type Scorer interface {
	ScoreProduction(ctx context.Context, location string, snap *Snapshot) (Scores, error)
}

// ReportScorer reads a set's own report (report.json: out-of-fold macro-F1 and per-class F1 on the
// data it was trained on). It needs no model runtime; a Scorer that runs the production set on the
// candidate's snapshot (cmd/hpa wires the ONNX Runtime one) compares on the same data.
type ReportScorer struct{ Store objstore.Store }

type reportJSON struct {
	Samples  int     `json:"samples"`
	MacroF1  float64 `json:"macro_f1"`
	PerClass []struct {
		ID        int     `json:"class_id"`
		Positives int     `json:"positives"`
		F1        float64 `json:"f1"`
	} `json:"per_class"`
}

// ScoreProduction implements Scorer from <location>report.json.
func (r ReportScorer) ScoreProduction(ctx context.Context, location string, _ *Snapshot) (Scores, error) {
	return readReportScores(ctx, r.Store, location)
}

func readReportScores(ctx context.Context, store objstore.Store, location string) (Scores, error) {
	key, err := keyOf(location)
	if err != nil {
		return Scores{}, err
	}
	b, err := store.Get(ctx, key+"report.json", 16<<20)
	if err != nil {
		return Scores{}, err
	}
	var rep reportJSON
	if err := json.Unmarshal(b, &rep); err != nil {
		return Scores{}, fmt.Errorf("%sreport.json: %w", key, err)
	}
	s := Scores{MacroF1: rep.MacroF1, Samples: rep.Samples, PerClass: make([]ClassScore, labels.NumClasses)}
	for _, c := range rep.PerClass {
		if c.ID >= 0 && c.ID < len(s.PerClass) {
			s.PerClass[c.ID] = ClassScore{F1: c.F1, Positives: c.Positives}
		}
	}
	return s, nil
}

// keyOf is the key prefix (ending in "/") of an s3://bucket/prefix location.
func keyOf(location string) (string, error) {
	u, err := objstore.ParseURL(location)
	if err != nil {
		return "", err
	}
	p := u.Prefix
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p, nil
}

// Guard decides whether cand may replace prod.
func Guard(g GuardConfig, cand, prod Scores) (ok bool, reason string, classes []runs.ClassCheck) {
	ok = cand.MacroF1 >= prod.MacroF1-g.Tolerance-1e-12
	var bad []string
	for c := 0; c < labels.NumClasses && c < len(cand.PerClass) && c < len(prod.PerClass); c++ {
		pos := max(cand.PerClass[c].Positives, prod.PerClass[c].Positives)
		if pos < g.MinPositives {
			continue
		}
		cc := runs.ClassCheck{ClassID: c, Name: labels.ClassNames[c], Positives: pos, CandidateF1: cand.PerClass[c].F1,
			ProductionF1: prod.PerClass[c].F1}
		cc.OK = prod.PerClass[c].F1-cand.PerClass[c].F1 <= g.ClassDrop+1e-12
		if !cc.OK {
			bad = append(bad, fmt.Sprintf("%s %.3f -> %.3f", cc.Name, cc.ProductionF1, cc.CandidateF1))
		}
		classes = append(classes, cc)
	}
	cmp := ">="
	if !ok {
		cmp = "<"
	}
	reason = fmt.Sprintf("macro-F1 %.4f %s %.4f - %.4f", cand.MacroF1, cmp, prod.MacroF1, g.Tolerance)
	if len(bad) > 0 {
		ok = false
		reason += fmt.Sprintf("; classes losing more than %.3f F1: %s", g.ClassDrop, strings.Join(bad, ", "))
	}
	return ok, reason, classes
}

// ModelsConfig locates model sets and the current-model pointer.
type ModelsConfig struct {
	// Bucket is the S3 bucket of the model sets (locations are s3://Bucket/ModelsPrefix<version>/).
	Bucket       string
	ModelsPrefix string
	// Pointer is the current-model pointer object (a Promotion), written with If-Match.
	Pointer         string
	PromotedSubject string
	Guard           GuardConfig
	// Baseline is the model set that counts as production while nothing was ever promoted (the set
	// the inference consumers were started with, e.g. `hpa up`'s bundled one); "" = none: the first
	// candidate is promoted unguarded.
	Baseline string
	// Replicas of the current-model bucket when it is created (config nats.replicas).
	Replicas int
	// EvalPrefix, when set, is a fixed evaluation set (EvalSet: label files below it, images below
	// EvalImagesPrefix) on which the guard scores candidate and production alike.
	EvalPrefix, EvalImagesPrefix string
}

func (c *ModelsConfig) fill() {
	if c.ModelsPrefix == "" {
		c.ModelsPrefix = runs.DefaultModelsPrefix
	}
	if c.Pointer == "" {
		c.Pointer = c.ModelsPrefix + "current.json"
	}
	if c.PromotedSubject == "" {
		c.PromotedSubject = bus.PromotedSubject
	}
	if c.Guard == (GuardConfig{}) {
		c.Guard = DefaultGuard()
	}
}

// Models promotes, rolls back and lists model sets: the pointer object, the KV fact the inference
// consumers watch, the promotion message, the decision records.
type Models struct {
	cfg    ModelsConfig
	kv     jetstream.KeyValue
	store  *objstore.Bucket
	nc     *nats.Conn
	Scorer Scorer
}

// NewModels opens the models KV bucket (creating it when missing).
func NewModels(ctx context.Context, cfg ModelsConfig, js jetstream.JetStream, nc *nats.Conn, store *objstore.Bucket) (*Models, error) {
	cfg.fill()
	if cfg.Bucket == "" {
		cfg.Bucket = store.Name
	}
	kv, err := ModelsKV(ctx, js, bus.Topology{Replicas: cfg.Replicas})
	if err != nil {
		return nil, err
	}
	return &Models{cfg: cfg, kv: kv, store: store, nc: nc, Scorer: ReportScorer{Store: store}}, nil
}

// ModelsKV opens (or creates, with t.Replicas) the current-model bucket.
func ModelsKV(ctx context.Context, js jetstream.JetStream, t bus.Topology) (jetstream.KeyValue, error) {
	return bus.EnsureModelsBucket(ctx, js, t)
}

// Location is where version's set lives.
func (m *Models) Location(version string) string {
	return "s3://" + m.cfg.Bucket + "/" + m.cfg.ModelsPrefix + version + "/"
}

// Current returns the current model (zero Promotion when none) and its KV revision (0: none).
func (m *Models) Current(ctx context.Context) (bus.Promotion, uint64, error) {
	e, err := m.kv.Get(ctx, bus.CurrentModelKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return bus.Promotion{}, 0, nil
	}
	if err != nil {
		return bus.Promotion{}, 0, err
	}
	return bus.ParsePromotion(e.Value()), e.Revision(), nil
}

// ErrConflict is returned when another promotion changed the current model first.
var ErrConflict = errors.New("the current model changed meanwhile (another promotion won)")

// ErrNoVersion is returned for a version without a model set.
var ErrNoVersion = errors.New("no such model version")

// Request is one promotion to decide.
type Request struct {
	Version string
	RunID   string
	By      string // coordinator | hpa model promote | hpa model rollback
	Force   bool
	Action  string // runs.ActionPromote (default) or runs.ActionRollback
	// Candidate are the candidate's scores (nil: read from its report.json); Snapshot the data
	// they were computed on (for the production scorer).
	Candidate     *Scores
	Snapshot      *Snapshot
	DatasetDigest string
}

// Decide scores the request against production, promotes when the guard (or Force) allows, and
// writes the decision record. A lost race returns ErrConflict (wrapped) and writes no record.
func (m *Models) Decide(ctx context.Context, r Request) (runs.Decision, error) {
	if err := runs.CheckName(r.Version); err != nil {
		return runs.Decision{}, err
	}
	if r.Action == "" {
		r.Action = runs.ActionPromote
	}
	loc := m.Location(r.Version)
	mfBytes, err := m.store.Get(ctx, m.cfg.ModelsPrefix+r.Version+"/manifest.json", 16<<20)
	if err != nil {
		if errors.Is(err, objstore.ErrNotFound) {
			return runs.Decision{}, fmt.Errorf("%s: %w", r.Version, ErrNoVersion)
		}
		return runs.Decision{}, err
	}
	cur, rev, err := m.Current(ctx)
	if err != nil {
		return runs.Decision{}, err
	}
	d := runs.Decision{Schema: runs.DecisionSchema, Time: time.Now().UTC(), Action: r.Action, Version: r.Version,
		ProductionVersion: cur.Version, RunID: r.RunID, By: r.By, Forced: r.Force}
	if cur.Version == r.Version {
		return d, fmt.Errorf("%s is already the current model", r.Version)
	}
	var eval *Snapshot
	if m.cfg.EvalPrefix != "" && !r.Force {
		if eval, err = EvalSet(ctx, m.store, m.cfg.EvalPrefix, m.cfg.EvalImagesPrefix); err != nil {
			return d, err
		}
		s, err := m.Scorer.ScoreProduction(ctx, loc, eval)
		if err != nil {
			return d, fmt.Errorf("score candidate %s on the evaluation set: %w", r.Version, err)
		}
		r.Candidate, r.Snapshot = &s, eval
	}
	if r.Candidate == nil {
		s, err := readReportScores(ctx, m.store, loc)
		if err != nil {
			return d, fmt.Errorf("candidate %s: %w", r.Version, err)
		}
		r.Candidate = &s
	}
	cf := r.Candidate.MacroF1
	d.CandidateMacroF1 = &cf
	d.EvalSamples = r.Candidate.Samples
	promote := true
	prodLoc := cur.Location
	if prodLoc == "" && m.cfg.Baseline != "" {
		prodLoc = m.cfg.Baseline
		d.ProductionVersion = "baseline"
	}
	switch {
	case prodLoc == "":
		d.Reason = "no production model yet"
	default:
		prod, err := m.Scorer.ScoreProduction(ctx, prodLoc, r.Snapshot)
		if err != nil && !r.Force {
			return d, fmt.Errorf("score production %s: %w", cur.Version, err)
		}
		if err == nil {
			pf, tol := prod.MacroF1, m.cfg.Guard.Tolerance
			d.ProductionMacroF1, d.Tolerance = &pf, &tol
			promote, d.Reason, d.Classes = Guard(m.cfg.Guard, *r.Candidate, prod)
		}
		if r.Force {
			d.Reason = "forced (" + d.Reason + ")"
			promote = true
		}
	}
	if !promote {
		d.Action = runs.ActionReject
		return d, m.writeDecision(ctx, d)
	}
	p := bus.Promotion{Location: loc, Version: r.Version, ManifestDigest: manifestDigest(mfBytes, loc),
		DatasetDigest: r.DatasetDigest, Previous: cur.Version, Time: d.Time.Format(time.RFC3339Nano)}
	if err := m.swap(ctx, p, cur.Version, rev); err != nil {
		return d, err
	}
	return d, m.writeDecision(ctx, d)
}

// swap makes p current in place of version expect (read at KV revision rev): the pointer object
// with If-Match on its ETag (If-None-Match when there is none), then the KV fact with
// compare-and-set on rev, then the promotion message. When the pointer or the fact no longer name
// expect, another promotion won: ErrConflict, and nothing is written.
func (m *Models) swap(ctx context.Context, p bus.Promotion, expect string, rev uint64) error {
	body, _ := json.Marshal(p)
	in := &s3.PutObjectInput{Bucket: aws.String(m.store.Name), Key: aws.String(m.cfg.Pointer), Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String("application/json")}
	cur, info, err := m.store.Open(ctx, m.cfg.Pointer)
	switch {
	case err == nil:
		var old bus.Promotion
		b := new(bytes.Buffer)
		_, _ = b.ReadFrom(cur)
		cur.Close()
		old = bus.ParsePromotion(b.Bytes())
		if old.Version != expect {
			return fmt.Errorf("pointer %s names %q, not %q: %w", m.cfg.Pointer, old.Version, expect, ErrConflict)
		}
		in.IfMatch = aws.String(`"` + info.ETag + `"`)
	case errors.Is(err, objstore.ErrNotFound):
		in.IfNoneMatch = aws.String("*")
	default:
		return err
	}
	if _, err := m.store.Client.PutObject(ctx, in); err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && (ae.ErrorCode() == "PreconditionFailed" || ae.ErrorCode() == "ConditionalRequestConflict") {
			return fmt.Errorf("pointer %s: %w", m.cfg.Pointer, ErrConflict)
		}
		return fmt.Errorf("pointer %s: %w", m.cfg.Pointer, err)
	}
	var kerr error
	if rev == 0 {
		_, kerr = m.kv.Create(ctx, bus.CurrentModelKey, body)
	} else {
		_, kerr = m.kv.Update(ctx, bus.CurrentModelKey, body, rev)
	}
	if kerr != nil {
		return fmt.Errorf("current model fact: %v: %w", kerr, ErrConflict)
	}
	if m.nc != nil {
		_ = m.nc.Publish(m.cfg.PromotedSubject, body)
		_ = m.nc.Flush()
	}
	return nil
}

// Reconcile repairs a promotion interrupted between the pointer write and the KV fact: when the
// pointer names another version than the fact, the fact follows the pointer.
func (m *Models) Reconcile(ctx context.Context) error {
	b, err := m.store.Get(ctx, m.cfg.Pointer, 1<<16)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	p := bus.ParsePromotion(b)
	cur, rev, err := m.Current(ctx)
	if err != nil || p.Version == "" || p.Version == cur.Version {
		return err
	}
	body, _ := json.Marshal(p)
	if rev == 0 {
		_, err = m.kv.Create(ctx, bus.CurrentModelKey, body)
	} else {
		_, err = m.kv.Update(ctx, bus.CurrentModelKey, body, rev)
	}
	return err
}

func (m *Models) writeDecision(ctx context.Context, d runs.Decision) error {
	b, err := runs.Marshal(d)
	if err != nil {
		return err
	}
	return m.store.Put(ctx, runs.DecisionKey(m.cfg.ModelsPrefix, d), b, "application/json")
}

// Rollback makes the version the current one replaced current again (same guard unless force).
func (m *Models) Rollback(ctx context.Context, by string, force bool) (runs.Decision, error) {
	cur, _, err := m.Current(ctx)
	if err != nil {
		return runs.Decision{}, err
	}
	if cur.Previous == "" {
		return runs.Decision{}, errors.New("rollback: the current model has no previous version")
	}
	return m.Decide(ctx, Request{Version: cur.Previous, By: by, Force: force, Action: runs.ActionRollback})
}

// VersionInfo is one model set in a listing.
type VersionInfo struct {
	Version  string
	Parent   string
	MacroF1  float64
	Members  int
	Current  bool
	Modified time.Time
}

// List returns the model sets below the models prefix, newest first.
func (m *Models) List(ctx context.Context) ([]VersionInfo, error) {
	objs, err := m.store.List(ctx, m.cfg.ModelsPrefix)
	if err != nil {
		return nil, err
	}
	cur, _, err := m.Current(ctx)
	if err != nil {
		return nil, err
	}
	var out []VersionInfo
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Key, m.cfg.ModelsPrefix)
		v, file, ok := strings.Cut(rest, "/")
		if !ok || file != "manifest.json" {
			continue
		}
		b, err := m.store.Get(ctx, o.Key, 16<<20)
		if err != nil {
			return nil, err
		}
		var mf struct {
			ParentVersion string             `json:"parent_version"`
			Members       []json.RawMessage  `json:"members"`
			Metrics       map[string]float64 `json:"metrics"`
		}
		if err := json.Unmarshal(b, &mf); err != nil {
			continue
		}
		f1 := mf.Metrics["oof_macro_f1"]
		if math.IsNaN(f1) {
			f1 = 0
		}
		out = append(out, VersionInfo{Version: v, Parent: mf.ParentVersion, MacroF1: f1, Members: len(mf.Members),
			Current: v == cur.Version, Modified: o.Modified})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Modified.After(out[j].Modified) })
	return out, nil
}

// manifestDigest is the digest labels carry (model.Manifest.Digest: over the canonical manifest),
// or the bytes' sha256 when the manifest does not parse.
func manifestDigest(b []byte, name string) string {
	if m, err := model.ParseManifest(b, name); err == nil {
		if d, err := m.Digest(); err == nil {
			return d
		}
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
