package runs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRunRoundTripAndValidation(t *testing.T) {
	loss, eta, f1 := 0.231, 95.0, 0.61
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := Run{Schema: RunSchema, ID: "20260102T030405Z-3f2a", State: RunRunning, Trigger: "policy", Samples: 900, NewSamples: 520,
		DatasetDigest: "sha256:ab", Candidate: "v7", BaseVersion: "v6", Created: ts, Updated: ts, MacroF1: &f1,
		Folds: []Fold{{Fold: 0, State: FoldDone, Epoch: 8, Epochs: 8}, {Fold: 1, State: FoldRunning, Worker: "w1", Attempts: 2,
			Cycle: 1, Cycles: 2, Epoch: 3, Epochs: 8, Loss: &loss, ETASeconds: &eta, Updated: ts}}}
	b, err := Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"schema": "hpa.training.run/v1"`, `"candidate_version": "v7"`, `"eta_seconds": 95`, `"new_samples": 520`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("run JSON lacks %s:\n%s", want, b)
		}
	}
	got, err := ParseRun(b, RunKey("", r.ID))
	if err != nil || got.Done() != 1 || *got.Folds[1].Loss != loss || !got.Updated.Equal(ts) {
		t.Fatalf("%v %+v", err, got)
	}
	if RunKey("", "x") != "training/runs/x.json" {
		t.Error(RunKey("", "x"))
	}
	for name, mut := range map[string]func(*Run){
		"schema":     func(r *Run) { r.Schema = "x" },
		"id":         func(r *Run) { r.ID = "../x" },
		"state":      func(r *Run) { r.State = "sleeping" },
		"candidate":  func(r *Run) { r.Candidate = "a/b" },
		"fold state": func(r *Run) { r.Folds[0].State = "?" },
		"epoch":      func(r *Run) { r.Folds[0].Epoch = 9 },
	} {
		c := r
		c.Folds = append([]Fold(nil), r.Folds...)
		mut(&c)
		b, _ := Marshal(c)
		var re *RecordError
		if _, err := ParseRun(b, "k"); !errors.As(err, &re) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDecision(t *testing.T) {
	c, p, tol := 0.61, 0.6, 0.005
	d := Decision{Schema: DecisionSchema, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)), Action: ActionReject,
		Version: "v7", ProductionVersion: "v6", RunID: "r1", By: "coordinator", Reason: "class 12 lost 0.2 F1",
		CandidateMacroF1: &c, ProductionMacroF1: &p, Tolerance: &tol, Classes: []ClassCheck{{ClassID: 12, Name: "Actin filaments", Positives: 40, CandidateF1: 0.3, ProductionF1: 0.5}}}
	if k := DecisionKey("", d); k != "models/decisions/20260102T020405Z-reject-v7.json" {
		t.Errorf("key %s", k)
	}
	b, _ := Marshal(d)
	got, err := ParseDecision(b, "k")
	if err != nil || got.Classes[0].Name != "Actin filaments" || *got.Tolerance != tol {
		t.Fatal(err, got)
	}
	d.Action = "maybe"
	b, _ = Marshal(d)
	if _, err := ParseDecision(b, "k"); err == nil {
		t.Error("unknown action accepted")
	}
	for _, s := range []string{"", ".", "..", "a/b", "a..b", "v 1", "ü"} {
		if err := CheckName(s); !errors.Is(err, ErrBadName) {
			t.Errorf("CheckName(%q) = %v", s, err)
		}
	}
	if CheckName("tiny128-synth_v1.2") != nil {
		t.Error("a good name refused")
	}
}
