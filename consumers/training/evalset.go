package training

import (
	"context"
	"fmt"
	"sort"

	"github.com/hpa-plates/hpa/internal/objstore"
)

// A fixed evaluation set (config training.eval_prefix): label files in the Kaggle format under a
// prefix of their own, naming samples whose images are under the images prefix. When it is set,
// the guard scores the candidate and the production set on it, both through the Scorer (the model
// runtime predicting the same images with each set's thresholds), instead of the candidate's
// out-of-fold predictions against the production set on the snapshot. Files apply in key order; a
// later row for an Id replaces an earlier one. A bad file (or an Id with missing images) fails the
// decision, naming the file and the rows: the production model stays.

// EvalSet reads the evaluation set below labelsPrefix (images below imagesPrefix) as a Snapshot.
func EvalSet(ctx context.Context, store objstore.Store, labelsPrefix, imagesPrefix string) (*Snapshot, error) {
	objs, err := store.List(ctx, labelsPrefix)
	if err != nil {
		return nil, fmt.Errorf("evaluation set %s: %w", labelsPrefix, err)
	}
	var keys []string
	for _, o := range objs {
		if IsLabelFile(labelsPrefix, o.Key) {
			keys = append(keys, o.Key)
		}
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return nil, fmt.Errorf("evaluation set %s: no label file", labelsPrefix)
	}
	imgs, err := store.List(ctx, imagesPrefix)
	if err != nil {
		return nil, fmt.Errorf("evaluation set images %s: %w", imagesPrefix, err)
	}
	m := make(map[string]string, len(imgs))
	for _, o := range imgs {
		m[o.Key] = o.ETag
	}
	ix := newChannelIndex(m)
	byID := map[string]Sample{}
	snap := &Snapshot{Schema: DatasetSchema}
	for _, k := range keys {
		data, err := store.Get(ctx, k, 256<<20)
		if err != nil {
			return nil, fmt.Errorf("evaluation set: %w", err)
		}
		rows, err := ParseLabelFile(k, "", data, ix)
		if err != nil {
			return nil, fmt.Errorf("evaluation set: %w", err)
		}
		snap.Files = append(snap.Files, k)
		for _, row := range rows {
			keys, etags, _ := ix.Channels(row.ID)
			byID[row.ID] = Sample{ID: row.ID, Targets: row.Targets, Keys: keys, ETags: etags}
		}
	}
	for _, s := range byID {
		snap.Samples = append(snap.Samples, s)
	}
	sort.Slice(snap.Samples, func(i, j int) bool { return snap.Samples[i].ID < snap.Samples[j].ID })
	snap.Digest = digestSamples(snap.Samples)
	return snap, nil
}
