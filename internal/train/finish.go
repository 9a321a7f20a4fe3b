package train

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/train/eval"
)

// finish turns the per-fold checkpoints into the model set: out-of-fold ensemble predictions,
// thresholds chosen on them, the manifest, the report and the curves.
func (t *trainer) finish(folds []*checkpoint, trained []int, skipped []string) (*Result, error) {
	k := t.cfg.Arch.NumClasses
	var probs [][]float64
	var oofLabels [][]int
	var members []model.Member
	memberF1 := map[string]float64{}
	var deviceSeconds float64
	type memberOOF struct {
		name  string
		probs [][]float64
		truth [][]int
	}
	var singles []memberOOF
	type foldOOF struct {
		fold    int
		members []string
		probs   [][]float64
		truth   [][]int
	}
	var foldEns []foldOOF
	opt := eval.DefaultThresholdOptions()
	if t.cfg.ShrinkK > 0 {
		opt.ShrinkK = t.cfg.ShrinkK
	}
	// Rate matching reproduces the class rates of the whole label file.
	rates, err := labels.ClassRates(t.data.labels, k)
	if err != nil {
		return nil, err
	}
	opt.Rates = rates
	keep, byKeep, err := t.selectSnapshots(folds, trained, opt)
	if err != nil {
		return nil, err
	}
	for _, f := range trained {
		ck := folds[f]
		deviceSeconds += ck.Seconds
		members = append(members, ck.Members[len(ck.Members)-keep:]...)
		_, val := t.split(f)
		fp, fl := t.foldOOF(ck, f, keep)
		probs, oofLabels = append(probs, fp...), append(oofLabels, fl...)
		if len(ck.SnapshotOOF) > 1 {
			// The fold's whole snapshot ensemble, whatever the selection kept (the report's comparison).
			all, truth := t.foldOOF(ck, f, len(ck.SnapshotOOF))
			fe := foldOOF{fold: f, probs: all, truth: truth}
			for _, m := range ck.Members {
				fe.members = append(fe.members, m.File)
			}
			foldEns = append(foldEns, fe)
		}
		for si, snap := range ck.SnapshotOOF {
			truth := make([][]int, len(val))
			for r, ex := range val {
				truth[r] = t.data.labels[ex]
			}
			singles = append(singles, memberOOF{ck.Members[si].File, snap, truth})
		}
	}
	if len(probs) == 0 {
		return nil, fmt.Errorf("train: no out-of-fold predictions (no fold was trained)")
	}
	truth, err := eval.TruthFromLabels(oofLabels, k)
	if err != nil {
		return nil, err
	}
	sel, chosen, err := chooseThresholds(probs, truth, opt)
	if err != nil {
		return nil, err
	}
	// Each member is scored twice on its own OOF rows: with thresholds chosen on its own OOF
	// predictions (what the member alone would ship with; the fair comparison with the ensemble) and
	// with the ensemble's thresholds.
	memberF1Ens := map[string]float64{}
	memberThr := map[string]*model.Thresholds{}
	for _, m := range singles {
		tr, err := eval.TruthFromLabels(m.truth, k)
		if err != nil {
			return nil, err
		}
		ownSel, own, err := chooseThresholds(m.probs, tr, opt)
		if err != nil {
			return nil, fmt.Errorf("member %s thresholds: %w", m.name, err)
		}
		memberF1[m.name] = own.Scores.MacroF1
		memberThr[m.name] = &model.Thresholds{Mode: ownSel.Mode, Uniform: ownSel.Uniform, PerClass: ownSel.PerClass}
		sc, err := eval.ScoreThresholds(m.probs, tr, chosen.Thresholds)
		if err != nil {
			return nil, err
		}
		memberF1Ens[m.name] = sc.MacroF1
	}
	// Each fold's snapshot ensemble against its best snapshot, on the same rows, each with thresholds
	// chosen on its own OOF predictions.
	var foldCmp []eval.FoldEnsemble
	for _, fe := range foldEns {
		tr, err := eval.TruthFromLabels(fe.truth, k)
		if err != nil {
			return nil, err
		}
		_, own, err := chooseThresholds(fe.probs, tr, opt)
		if err != nil {
			return nil, err
		}
		fc := eval.FoldEnsemble{Fold: fe.fold, EnsembleMacroF1: own.Scores.MacroF1}
		for _, m := range fe.members {
			if memberF1[m] > fc.BestMemberMacroF1 || fc.BestMember == "" {
				fc.BestMember, fc.BestMemberMacroF1 = m, memberF1[m]
			}
		}
		foldCmp = append(foldCmp, fc)
	}
	// Attach each member's single OOF macro-F1s and its own thresholds to its manifest entry.
	for i := range members {
		members[i].Metrics = map[string]float64{"oof_macro_f1": memberF1[members[i].File],
			"oof_macro_f1_ensemble_thresholds": memberF1Ens[members[i].File]}
		members[i].Thresholds = memberThr[members[i].File]
	}

	mf := &model.Manifest{
		Schema: model.ManifestSchema, Name: t.cfg.Name, Version: t.cfg.Version, ParentVersion: t.cfg.ParentVersion,
		Arch: t.cfg.Arch, InputSize: t.cfg.Size, ChannelOrder: slices.Clone(pipeline.ChannelNames[:t.cfg.Arch.InChans]),
		Normalization: t.cfg.Normalization, ClassNames: slices.Clone(labels.ClassNames[:]),
		InputName: "input", OutputName: "logits", TTAViews: t.cfg.TTAViews,
		Thresholds: model.Thresholds{Mode: sel.Mode, Uniform: sel.Uniform, PerClass: sel.PerClass},
		Members:    members, Report: "report.md",
		Metrics: map[string]float64{
			"oof_macro_f1":           chosen.Scores.MacroF1,
			"oof_macro_f1_uniform":   sel.UniformResult.Scores.MacroF1,
			"oof_macro_f1_per_class": sel.PerClassResult.Scores.MacroF1,
			"oof_macro_f1_rate":      sel.RateResult.Scores.MacroF1,
			"oof_samples":            float64(len(probs)),
		},
	}
	rep := &eval.Report{
		Name: t.cfg.Name, Version: t.cfg.Version, Arch: t.cfg.Arch.Name, Params: t.cfg.Arch.ParamCount(), Size: t.cfg.Size,
		Samples: len(t.data.ids), Skipped: skipped, Folds: t.cfg.Folds, TrainedFolds: trained, Cycles: t.cfg.Cycles,
		EpochsPerCycle: t.cfg.EpochsPerCycle, BatchSize: t.cfg.BatchSize, Members: len(members),
		Optimizer: t.cfg.Optimizer, LR: t.cfg.LR, Sampler: t.cfg.SamplerFor(), Loss: t.cfg.Loss,
		WallSeconds: time.Since(t.start).Seconds(), DeviceSeconds: deviceSeconds, PricePerHour: t.cfg.PricePerHour,
		Cost: deviceSeconds / 3600 * t.cfg.PricePerHour, Policy: sel.Mode, MacroF1: chosen.Scores.MacroF1,
		PolicyScores: map[string]float64{
			"uniform": sel.UniformResult.Scores.MacroF1, "per_class": sel.PerClassResult.Scores.MacroF1, "rate": sel.RateResult.Scores.MacroF1,
		},
		MemberMacroF1: memberF1, MemberMacroF1EnsThr: memberF1Ens, Normalization: t.cfg.Normalization,
		FoldEnsembles: foldCmp,
		Warnings:      t.rareClassWarnings(),
	}
	if byKeep != nil {
		rep.Snapshots = &eval.SnapshotSelection{Kept: keep, Of: len(byKeep), Margin: SnapshotMargin, MacroF1ByKept: byKeep}
	}
	for _, f := range trained {
		spe := t.batchesPerEpoch(f)
		var el []float64
		for e := 0; (e+1)*spe <= len(folds[f].Losses); e++ {
			var sum float64
			for _, l := range folds[f].Losses[e*spe : (e+1)*spe] {
				sum += l
			}
			el = append(el, sum/float64(spe))
		}
		rep.EpochLoss = append(rep.EpochLoss, el)
	}
	rep.Warnings = append(rep.Warnings, "threshold rule: "+sel.Rule)
	if t.dupGroups > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("near-duplicates (pHash within %d bits): %d groups holding %d samples, each kept inside one fold",
			t.cfg.DedupHamming, t.dupGroups, t.dupSamples))
	}
	for c := 0; c < k; c++ {
		cs := chosen.Scores.PerClass[c]
		rep.PerClass = append(rep.PerClass, eval.ClassRow{ID: c, Name: labels.ClassNames[c], Positives: cs.Support,
			Threshold: chosen.Thresholds[c], Precision: cs.Precision, Recall: cs.Recall, F1: cs.F1})
	}
	if err := rep.Write(t.cfg.OutDir); err != nil {
		return nil, err
	}
	if err := t.writeCurves(folds, trained); err != nil {
		return nil, err
	}
	path, err := model.WriteManifest(t.cfg.OutDir, mf)
	if err != nil {
		return nil, err
	}
	return &Result{ManifestPath: path, Manifest: mf, Report: rep, Skipped: skipped}, nil
}

// chooseThresholds runs eval.SelectThresholds and returns the chosen policy's result.
// SnapshotMargin is the out-of-fold macro-F1 one snapshot more must add to be kept (Config.Snapshots auto).
const SnapshotMargin = 0.002

// foldOOF returns the out-of-fold predictions of fold f, each row the mean of the fold's last keep
// snapshots, and the rows' labels.
func (t *trainer) foldOOF(ck *checkpoint, f, keep int) ([][]float64, [][]int) {
	_, val := t.split(f)
	snaps := ck.SnapshotOOF[len(ck.SnapshotOOF)-keep:]
	probs := make([][]float64, len(val))
	labs := make([][]int, len(val))
	for r, ex := range val {
		p := make([]float64, t.cfg.Arch.NumClasses)
		for _, snap := range snaps {
			for c := range p {
				p[c] += snap[r][c] / float64(len(snaps))
			}
		}
		probs[r], labs[r] = p, t.data.labels[ex]
	}
	return probs, labs
}

// selectSnapshots returns how many of each fold's last snapshots the model set keeps and, when it
// chose (Config.Snapshots auto, 2+ snapshots), the out-of-fold macro-F1 of the ensemble for each
// count (thresholds chosen on that ensemble's OOF predictions, as for the model set). One snapshot
// more is kept only if it adds more than SnapshotMargin over the best smaller count.
func (t *trainer) selectSnapshots(folds []*checkpoint, trained []int, opt eval.ThresholdOptions) (int, map[int]float64, error) {
	n := 0
	for i, f := range trained {
		if c := len(folds[f].SnapshotOOF); i == 0 || c < n {
			n = c
		}
	}
	if n < 1 {
		return 0, nil, fmt.Errorf("train: a fold has no snapshot")
	}
	for _, f := range trained {
		if len(folds[f].Members) != len(folds[f].SnapshotOOF) {
			return 0, nil, fmt.Errorf("train: fold %d has %d members for %d snapshots", f, len(folds[f].Members), len(folds[f].SnapshotOOF))
		}
	}
	if t.cfg.Snapshots == "all" || n == 1 {
		return n, nil, nil
	}
	scores := map[int]float64{}
	best := 0
	for keep := 1; keep <= n; keep++ {
		var probs [][]float64
		var labs [][]int
		for _, f := range trained {
			p, l := t.foldOOF(folds[f], f, keep)
			probs, labs = append(probs, p...), append(labs, l...)
		}
		truth, err := eval.TruthFromLabels(labs, t.cfg.Arch.NumClasses)
		if err != nil {
			return 0, nil, err
		}
		_, res, err := chooseThresholds(probs, truth, opt)
		if err != nil {
			return 0, nil, err
		}
		scores[keep] = res.Scores.MacroF1
		if best == 0 || scores[keep] > scores[best]+SnapshotMargin {
			best = keep
		}
	}
	return best, scores, nil
}

func chooseThresholds(probs [][]float64, truth [][]bool, opt eval.ThresholdOptions) (*eval.ThresholdSelection, eval.PolicyResult, error) {
	sel, err := eval.SelectThresholds(probs, truth, opt)
	if err != nil {
		return nil, eval.PolicyResult{}, err
	}
	chosen := sel.UniformResult
	for _, p := range sel.Policies() {
		if p.Mode == sel.Mode {
			chosen = p
		}
	}
	return sel, chosen, nil
}

// rareClassWarnings names the classes with fewer examples than folds and the folds that lack them.
func (t *trainer) rareClassWarnings() []string {
	k := t.cfg.Arch.NumClasses
	count := make([]int, k)
	inFold := make([][]int, k)
	for c := range inFold {
		inFold[c] = make([]int, t.cfg.Folds)
	}
	for i, ls := range t.data.labels {
		for _, c := range ls {
			count[c]++
			inFold[c][t.folds[i]]++
		}
	}
	var w []string
	for c := 0; c < k; c++ {
		if count[c] >= t.cfg.Folds {
			continue
		}
		var lacking []int
		for f, n := range inFold[c] {
			if n == 0 {
				lacking = append(lacking, f)
			}
		}
		w = append(w, fmt.Sprintf("class %d (%s) has %d examples, fewer than %d folds; folds without it: %v",
			c, labels.ClassNames[c], count[c], t.cfg.Folds, lacking))
	}
	return w
}

func (t *trainer) writeCurves(folds []*checkpoint, trained []int) error {
	var loss []eval.Series
	var lr eval.Series
	for _, f := range trained {
		ck := folds[f]
		xs := make([]float64, len(ck.Losses))
		ys := make([]float64, len(ck.Losses))
		win := max(1, len(ck.Losses)/50)
		var acc float64
		for i, l := range ck.Losses {
			xs[i] = float64(i)
			acc += l
			if i >= win {
				acc -= ck.Losses[i-win]
			}
			ys[i] = acc / float64(min(i+1, win))
		}
		loss = append(loss, eval.Series{Name: fmt.Sprintf("fold %d", f), X: xs, Y: ys})
		if lr.X == nil {
			lr = eval.Series{Name: "lr", X: xs, Y: slices.Clone(ck.LRs)}
		}
	}
	f, err := os.Create(filepath.Join(t.cfg.OutDir, "curves.png"))
	if err != nil {
		return err
	}
	defer f.Close()
	return eval.PlotPNG(f, []eval.Panel{
		{Title: "training loss (moving average)", XLab: "step", LogY: true, Lines: loss},
		{Title: "learning rate", XLab: "step", Lines: []eval.Series{lr}},
	}, 800, 260)
}
