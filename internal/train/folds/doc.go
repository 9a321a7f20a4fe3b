// Package folds splits a labeled data set into K folds for cross-validation: a multilabel
// stratified assignment (StratifiedKFold, with Balance to check it), near-duplicate images kept in
// one fold (PHash, SampleHashes, GroupByHash), and the fold file `Id,fold` (Write, Read, ReadFile).
// It is used by the trainer (internal/train), `hpa folds` and the training consumer, and depends on
// neither the trainer nor a training backend.
package folds
