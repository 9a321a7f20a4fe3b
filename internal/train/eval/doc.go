// Package eval scores multilabel predictions and reports a training run: per-class and macro F1
// (Score, ScoreThresholds, ScoreCounts), threshold selection on out-of-fold predictions
// (SelectThresholds), the training Report (report.json, report.md) and its curves (PlotPNG). It
// is used by the trainer (internal/train), the training consumer's scorer, the viewer and
// `hpa demo`, and depends on neither the trainer nor a training backend.
package eval
