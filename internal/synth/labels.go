package synth

import "github.com/hpa-plates/hpa/internal/labels"

// LabeledID is one row of an HPA label file (labels.Target: the Id and its class ids).
// labels.ReadTargets / labels.WriteTargets read and write the format.
type LabeledID = labels.Target

// ClassCounts returns, for each class, the number of rows whose labels contain it.
func ClassCounts(rows []LabeledID) [labels.NumClasses]int {
	var n [labels.NumClasses]int
	for _, r := range rows {
		for _, c := range r.Labels {
			if c >= 0 && c < labels.NumClasses {
				n[c]++
			}
		}
	}
	return n
}

// ClassFrequencies returns, for each class, the fraction of rows whose labels contain it
// (all zero for no rows). The fractions sum to the mean number of labels per row, not to 1.
func ClassFrequencies(rows []LabeledID) [labels.NumClasses]float64 {
	var f [labels.NumClasses]float64
	if len(rows) == 0 {
		return f
	}
	n := ClassCounts(rows)
	for c := range f {
		f[c] = float64(n[c]) / float64(len(rows))
	}
	return f
}
