package eval

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hpa-plates/hpa/internal/model"
)

// Report is the training report: what the run cost and how good its members are, written as
// report.json (machine-readable), report.md (a person's summary) and curves.png (loss and LR).
type Report struct {
	Name           string             `json:"name"`
	Version        string             `json:"version"`
	Arch           string             `json:"arch"`
	Params         int                `json:"params"`
	Size           int                `json:"size"`
	Samples        int                `json:"samples"`
	Skipped        []string           `json:"skipped,omitempty"`
	Folds          int                `json:"folds"`
	TrainedFolds   []int              `json:"trained_folds"`
	Cycles         int                `json:"cycles"`
	EpochsPerCycle int                `json:"epochs_per_cycle"`
	BatchSize      int                `json:"batch_size"`
	Optimizer      string             `json:"optimizer"`
	LR             float64            `json:"lr"`
	Sampler        string             `json:"sampler"`
	Loss           string             `json:"loss"`
	Members        int                `json:"members"`
	WallSeconds    float64            `json:"wall_seconds"`
	DeviceSeconds  float64            `json:"device_seconds"`
	PricePerHour   float64            `json:"price_per_device_hour"`
	Cost           float64            `json:"cost"`
	Policy         string             `json:"threshold_policy"`
	MacroF1        float64            `json:"oof_macro_f1"`
	PolicyScores   map[string]float64 `json:"oof_macro_f1_by_policy"`
	PerClass       []ClassRow         `json:"per_class"`
	MemberMacroF1  map[string]float64 `json:"member_oof_macro_f1"` // single members with TTA, thresholds chosen on their own OOF
	// MemberMacroF1EnsThr: single members with the ensemble's thresholds.
	MemberMacroF1EnsThr map[string]float64  `json:"member_oof_macro_f1_ensemble_thresholds,omitempty"`
	Normalization       model.Normalization `json:"normalization"`
	// FoldEnsembles: each fold's snapshot ensemble vs its best snapshot (folds with 2+ snapshots).
	FoldEnsembles []FoldEnsemble `json:"fold_ensembles,omitempty"`
	// Snapshots: how many of each fold's last snapshots the set keeps, chosen on OOF (nil: all kept
	// without a choice).
	Snapshots *SnapshotSelection `json:"snapshot_selection,omitempty"`
	// EpochLoss is each trained fold's mean training loss per epoch (in TrainedFolds order).
	EpochLoss [][]float64 `json:"epoch_loss"`
	Warnings  []string    `json:"warnings,omitempty"`
}

// FoldEnsemble compares one fold's snapshot ensemble with its best snapshot on the fold's OOF rows,
// each with thresholds chosen on its own OOF predictions.
type FoldEnsemble struct {
	Fold              int     `json:"fold"`
	EnsembleMacroF1   float64 `json:"ensemble_oof_macro_f1"`
	BestMember        string  `json:"best_member"`
	BestMemberMacroF1 float64 `json:"best_member_oof_macro_f1"`
}

// SnapshotSelection records the choice of the last Kept of Of snapshots per fold: the OOF macro-F1
// of the ensemble for each count; a snapshot more had to add more than Margin.
type SnapshotSelection struct {
	Kept          int             `json:"kept"`
	Of            int             `json:"of"`
	Margin        float64         `json:"margin"`
	MacroF1ByKept map[int]float64 `json:"oof_macro_f1_by_kept"`
}

// ClassRow is one line of the per-class table.
type ClassRow struct {
	ID        int     `json:"class_id"`
	Name      string  `json:"name"`
	Positives int     `json:"positives"`
	Threshold float64 `json:"threshold"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
}

// Write saves report.json and report.md into dir.
func (r *Report) Write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.Markdown()), 0o644)
}

// Markdown renders the report for people.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Training report: %s %s\n\n", r.Name, r.Version)
	fmt.Fprintf(&b, "- architecture: %s (%d parameters), input %d px\n", r.Arch, r.Params, r.Size)
	fmt.Fprintf(&b, "- data: %d samples, %d folds (trained: %v), %d cycles x %d epochs, batch %d\n",
		r.Samples, r.Folds, r.TrainedFolds, r.Cycles, r.EpochsPerCycle, r.BatchSize)
	fmt.Fprintf(&b, "- recipe: %s lr %g, %s loss, %s batches\n", r.Optimizer, r.LR, r.Loss, r.Sampler)
	fmt.Fprintf(&b, "- members: %d\n", r.Members)
	if len(r.Normalization.Mean) > 0 {
		fmt.Fprintf(&b, "- input normalization (per channel): mean %v, std %v\n", r.Normalization.Mean, r.Normalization.Std)
	}
	fmt.Fprintf(&b, "- wall time: %.1f s; device time: %.1f s (%.4f device-hours)", r.WallSeconds, r.DeviceSeconds, r.DeviceSeconds/3600)
	if r.PricePerHour > 0 {
		fmt.Fprintf(&b, "; cost: %.4f at %.2f per device-hour", r.Cost, r.PricePerHour)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "- out-of-fold macro-F1 (ensemble, TTA, policy %q): **%.4f**\n", r.Policy, r.MacroF1)
	for _, k := range sortedKeys(r.PolicyScores) {
		fmt.Fprintf(&b, "  - %s: %.4f\n", k, r.PolicyScores[k])
	}
	if len(r.MemberMacroF1) > 0 {
		b.WriteString("- single members (OOF, TTA; own thresholds / the ensemble's thresholds):\n")
		for _, k := range sortedKeys(r.MemberMacroF1) {
			fmt.Fprintf(&b, "  - %s: %.4f / %.4f\n", k, r.MemberMacroF1[k], r.MemberMacroF1EnsThr[k])
		}
	}
	for _, fe := range r.FoldEnsembles {
		fmt.Fprintf(&b, "- fold %d: snapshot ensemble %.4f vs best snapshot %s %.4f (OOF, each with its own thresholds): %+.4f\n",
			fe.Fold, fe.EnsembleMacroF1, fe.BestMember, fe.BestMemberMacroF1, fe.EnsembleMacroF1-fe.BestMemberMacroF1)
	}
	if s := r.Snapshots; s != nil {
		fmt.Fprintf(&b, "- snapshots: the set keeps the last %d of %d per fold (OOF macro-F1 of the ensemble by snapshots kept:", s.Kept, s.Of)
		for k := 1; k <= s.Of; k++ {
			fmt.Fprintf(&b, " %d: %.4f", k, s.MacroF1ByKept[k])
		}
		fmt.Fprintf(&b, "; one more must add > %.3f)\n", s.Margin)
	}
	for i, l := range r.EpochLoss {
		if len(l) > 0 && i < len(r.TrainedFolds) {
			fmt.Fprintf(&b, "- fold %d mean training loss: first epoch %.4f, last epoch %.4f\n", r.TrainedFolds[i], l[0], l[len(l)-1])
		}
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "- warning: %s\n", w)
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(&b, "- skipped %d samples with missing images\n", len(r.Skipped))
	}
	b.WriteString("- the defaults of this recipe were chosen by a held-out ablation (docs/quality.md in the hpa repository: sampler, augmentations, optimizer, init, thresholds, snapshots, TTA)\n")
	b.WriteString("\n![loss and learning rate](curves.png)\n\n")
	b.WriteString("| id | class | positives | threshold | precision | recall | F1 |\n|---:|---|---:|---:|---:|---:|---:|\n")
	for _, c := range r.PerClass {
		fmt.Fprintf(&b, "| %d | %s | %d | %.3f | %.3f | %.3f | %.3f |\n", c.ID, c.Name, c.Positives, c.Threshold, c.Precision, c.Recall, c.F1)
	}
	return b.String()
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
