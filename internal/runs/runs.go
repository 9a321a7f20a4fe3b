// Package runs holds the durable records of the training loop that people look at: a training run
// (training/runs/<id>.json, rewritten as the run progresses) and a model decision (a promotion, a
// refused candidate, a rollback; models/decisions/<time>-<action>-<version>.json, written once).
// The training consumer writes them; the plate viewer (internal/viewer) and `hpa training status`
// read them. Both sides use these types, so the JSON shapes below are the contract.
//
// Key layout (prefixes configurable; these are the defaults):
//
//	training/runs/<run id>.json                      Run      (schema "hpa.training.run/v1")
//	models/decisions/<YYYYMMDDThhmmssZ>-<action>-<version>.json
//	                                                 Decision (schema "hpa.model.decision/v1")
//	models/<version>/manifest.json, report.json, curves.png   the model set a run wrote
//
// Run ids and versions are one key segment of [A-Za-z0-9._-] (no "..").
package runs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Schemas of the records.
const (
	RunSchema      = "hpa.training.run/v1"
	DecisionSchema = "hpa.model.decision/v1"
)

// Default key prefixes.
const (
	DefaultRunsPrefix   = "training/runs/"
	DefaultModelsPrefix = "models/"
	// DecisionsDir is the folder of decision records below the models prefix.
	DecisionsDir = "decisions/"
)

// Run states.
const (
	RunQueued   = "queued"   // created, no fold job taken yet
	RunRunning  = "running"  // fold jobs in progress
	RunMerging  = "merging"  // all folds in: OOF merge, thresholds, model set
	RunDeciding = "deciding" // candidate written, being compared with production
	RunDone     = "done"     // finished; Decision names the outcome
	RunFailed   = "failed"   // Error says why
)

// Fold states.
const (
	FoldPending = "pending"
	FoldRunning = "running"
	FoldDone    = "done"
	FoldFailed  = "failed"
)

// Run is one training run, training/runs/<id>.json. The coordinator rewrites it whenever the run
// moves (fold progress at most every few seconds). Fields:
//
//	schema            "hpa.training.run/v1"
//	id                run id, one key segment, e.g. "20260102T030405Z-3f2a9c"
//	state             queued | running | merging | deciding | done | failed
//	trigger           "policy" (enough new labels) | "manual" (hpa training trigger)
//	dataset_digest    digest of the frozen dataset snapshot ("sha256:<hex>")
//	dataset           key of the snapshot (datasets/<digest>.json)
//	samples           labeled samples in the snapshot
//	new_samples       of them, new since the production model's dataset
//	base_version      production model version when the run started ("" when none)
//	candidate_version version of the model set the run writes (models/<version>/)
//	folds             one entry per fold job (see Fold), in fold order
//	created, updated  RFC 3339 times; finished when state is done or failed
//	error             why the run failed
//	report, curves    keys of the candidate's report.json and curves.png once written
//	macro_f1          the candidate's out-of-fold macro-F1 once known
//	decision          key of the Decision record once decided
type Run struct {
	Schema        string     `json:"schema"`
	ID            string     `json:"id"`
	State         string     `json:"state"`
	Trigger       string     `json:"trigger,omitempty"`
	DatasetDigest string     `json:"dataset_digest,omitempty"`
	Dataset       string     `json:"dataset,omitempty"`
	Samples       int        `json:"samples"`
	NewSamples    int        `json:"new_samples"`
	BaseVersion   string     `json:"base_version,omitempty"`
	Candidate     string     `json:"candidate_version,omitempty"`
	Folds         []Fold     `json:"folds"`
	Created       time.Time  `json:"created"`
	Updated       time.Time  `json:"updated"`
	Finished      *time.Time `json:"finished,omitempty"`
	Error         string     `json:"error,omitempty"`
	Report        string     `json:"report,omitempty"`
	Curves        string     `json:"curves,omitempty"`
	MacroF1       *float64   `json:"macro_f1,omitempty"`
	Decision      string     `json:"decision,omitempty"`
}

// Fold is the progress of one fold job:
//
//	fold              fold index (0-based)
//	state             pending | running | done | failed
//	worker            the worker holding the job (host or pod name)
//	attempts          deliveries of the job so far (a killed worker's job is taken again)
//	cycle, cycles     current snapshot cycle (1-based) of cycles
//	epoch, epochs     current epoch (1-based) of all epochs of the fold (cycles x epochs per cycle)
//	loss              last epoch's mean training loss
//	eta_seconds       the worker's estimate of the time left
//	updated           RFC 3339 time of the last heartbeat
type Fold struct {
	Fold       int       `json:"fold"`
	State      string    `json:"state"`
	Worker     string    `json:"worker,omitempty"`
	Attempts   int       `json:"attempts,omitempty"`
	Cycle      int       `json:"cycle,omitempty"`
	Cycles     int       `json:"cycles,omitempty"`
	Epoch      int       `json:"epoch,omitempty"`
	Epochs     int       `json:"epochs,omitempty"`
	Loss       *float64  `json:"loss,omitempty"`
	ETASeconds *float64  `json:"eta_seconds,omitempty"`
	Updated    time.Time `json:"updated,omitzero"`
}

// Decision actions.
const (
	ActionPromote  = "promote"  // the candidate became the production model
	ActionReject   = "reject"   // the guard kept the production model
	ActionRollback = "rollback" // the pointer went back to an earlier version
)

// Decision is one promotion decision, models/decisions/<time>-<action>-<version>.json, written
// once. Fields:
//
//	schema               "hpa.model.decision/v1"
//	time                 RFC 3339 time of the decision
//	action               promote | reject | rollback
//	version              the candidate (promote, reject) or the version rolled back to
//	production_version   the production version it was compared with / replaced ("" when none)
//	run_id               the run that trained the candidate ("" for manual actions)
//	by                   "coordinator" | "hpa model promote" | "hpa model rollback"
//	forced               true when the guard was skipped (--force)
//	reason               one sentence a person reads ("macro-F1 0.612 >= 0.605 - 0.005", ...)
//	candidate_macro_f1, production_macro_f1, tolerance   the guard's numbers (omitted when not scored)
//	eval_samples         samples both sets were scored on
//	classes              the per-class check: class_id, name, positives, candidate_f1,
//	                     production_f1, ok (false: the class lost more F1 than allowed)
type Decision struct {
	Schema            string       `json:"schema"`
	Time              time.Time    `json:"time"`
	Action            string       `json:"action"`
	Version           string       `json:"version"`
	ProductionVersion string       `json:"production_version,omitempty"`
	RunID             string       `json:"run_id,omitempty"`
	By                string       `json:"by,omitempty"`
	Forced            bool         `json:"forced,omitempty"`
	Reason            string       `json:"reason"`
	CandidateMacroF1  *float64     `json:"candidate_macro_f1,omitempty"`
	ProductionMacroF1 *float64     `json:"production_macro_f1,omitempty"`
	Tolerance         *float64     `json:"tolerance,omitempty"`
	EvalSamples       int          `json:"eval_samples,omitempty"`
	Classes           []ClassCheck `json:"classes,omitempty"`
}

// ClassCheck is one class of the promotion guard.
type ClassCheck struct {
	ClassID      int     `json:"class_id"`
	Name         string  `json:"name"`
	Positives    int     `json:"positives"`
	CandidateF1  float64 `json:"candidate_f1"`
	ProductionF1 float64 `json:"production_f1"`
	OK           bool    `json:"ok"`
}

// RecordError reports a record that cannot be parsed or is inconsistent.
type RecordError struct {
	Key    string // may be empty
	Reason string
}

func (e *RecordError) Error() string {
	if e.Key == "" {
		return "runs: " + e.Reason
	}
	return fmt.Sprintf("runs: %s: %s", e.Key, e.Reason)
}

// ErrBadName is returned (wrapped) for a run id or version that is not one safe key segment.
var ErrBadName = errors.New("not one key segment of [A-Za-z0-9._-]")

// CheckName reports whether s can be a run id or model version in a key.
func CheckName(s string) error {
	if s == "" || s == "." || s == ".." || len(s) > 200 || strings.Contains(s, "..") {
		return fmt.Errorf("%q: %w", s, ErrBadName)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '.' || c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			return fmt.Errorf("%q: %w", s, ErrBadName)
		}
	}
	return nil
}

// RunKey is the key of run id below prefix (DefaultRunsPrefix when empty).
func RunKey(prefix, id string) string {
	if prefix == "" {
		prefix = DefaultRunsPrefix
	}
	return prefix + id + ".json"
}

// DecisionKey is the key of d below the models prefix (DefaultModelsPrefix when empty): the time
// first, so a listing is in decision order.
func DecisionKey(modelsPrefix string, d Decision) string {
	if modelsPrefix == "" {
		modelsPrefix = DefaultModelsPrefix
	}
	return modelsPrefix + DecisionsDir + d.Time.UTC().Format("20060102T150405Z") + "-" + d.Action + "-" + d.Version + ".json"
}

// Validate checks the fields readers rely on.
func (r *Run) Validate() error {
	bad := func(format string, a ...any) error {
		return &RecordError{Reason: fmt.Sprintf("run %q: ", r.ID) + fmt.Sprintf(format, a...)}
	}
	if r.Schema != RunSchema {
		return bad("schema %q, want %q", r.Schema, RunSchema)
	}
	if err := CheckName(r.ID); err != nil {
		return bad("id %v", err)
	}
	switch r.State {
	case RunQueued, RunRunning, RunMerging, RunDeciding, RunDone, RunFailed:
	default:
		return bad("unknown state %q", r.State)
	}
	if r.Candidate != "" {
		if err := CheckName(r.Candidate); err != nil {
			return bad("candidate_version %v", err)
		}
	}
	for i, f := range r.Folds {
		switch f.State {
		case FoldPending, FoldRunning, FoldDone, FoldFailed:
		default:
			return bad("fold %d: unknown state %q", i, f.State)
		}
		if f.Epochs < 0 || f.Epoch < 0 || (f.Epochs > 0 && f.Epoch > f.Epochs) {
			return bad("fold %d: epoch %d of %d", i, f.Epoch, f.Epochs)
		}
	}
	return nil
}

// Validate checks the fields readers rely on.
func (d *Decision) Validate() error {
	bad := func(format string, a ...any) error {
		return &RecordError{Reason: fmt.Sprintf("decision %q: ", d.Version) + fmt.Sprintf(format, a...)}
	}
	if d.Schema != DecisionSchema {
		return bad("schema %q, want %q", d.Schema, DecisionSchema)
	}
	switch d.Action {
	case ActionPromote, ActionReject, ActionRollback:
	default:
		return bad("unknown action %q", d.Action)
	}
	if err := CheckName(d.Version); err != nil {
		return bad("version %v", err)
	}
	if d.Time.IsZero() {
		return bad("no time")
	}
	return nil
}

// Done counts the folds in state done.
func (r *Run) Done() int {
	n := 0
	for _, f := range r.Folds {
		if f.State == FoldDone {
			n++
		}
	}
	return n
}

// Marshal encodes a record as indented JSON with a trailing newline.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ParseRun decodes and validates a run record. Unknown fields are accepted (a newer writer may
// add some); key is used in errors.
func ParseRun(b []byte, key string) (*Run, error) {
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, &RecordError{Key: key, Reason: err.Error()}
	}
	if err := r.Validate(); err != nil {
		return nil, &RecordError{Key: key, Reason: err.Error()}
	}
	return &r, nil
}

// ParseDecision decodes and validates a decision record.
func ParseDecision(b []byte, key string) (*Decision, error) {
	var d Decision
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, &RecordError{Key: key, Reason: err.Error()}
	}
	if err := d.Validate(); err != nil {
		return nil, &RecordError{Key: key, Reason: err.Error()}
	}
	return &d, nil
}
