package synth

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

//go:generate go test -run ^TestLabelSetTableMatchesRealData$ -update

// LabelSet is one distinct combination of classes (sorted ascending) and how many rows carry exactly it.
type LabelSet struct {
	Labels []int
	Count  int
}

// Key is the set's canonical text form, e.g. "0 21 25".
func (s LabelSet) Key() string { return labelKey(s.Labels) }

func labelKey(labels []int) string {
	parts := make([]string, len(labels))
	for i, c := range labels {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, " ")
}

// ComputeLabelSets is the empirical distribution of label sets of rows: one entry per distinct
// set of class ids (order within a row does not matter), sorted by Count descending, then by
// labels lexicographically.
func ComputeLabelSets(rows []LabeledID) []LabelSet {
	idx := make(map[string]int)
	var sets []LabelSet
	for _, r := range rows {
		labels := slices.Clone(r.Labels)
		slices.Sort(labels)
		labels = slices.Compact(labels)
		k := labelKey(labels)
		if i, ok := idx[k]; ok {
			sets[i].Count++
			continue
		}
		idx[k] = len(sets)
		sets = append(sets, LabelSet{Labels: labels, Count: 1})
	}
	slices.SortFunc(sets, func(a, b LabelSet) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return slices.Compare(a.Labels, b.Labels)
	})
	return sets
}

// RealLabelSets returns a copy of the label-set distribution of the real HPA train.csv
// (31,072 rows), embedded in labelsets_gen.go.
func RealLabelSets() []LabelSet {
	out := make([]LabelSet, len(realLabelSets))
	for i, s := range realLabelSets {
		out[i] = LabelSet{Labels: slices.Clone(s.Labels), Count: s.Count}
	}
	return out
}

// labelSampler draws label sets with probability proportional to their counts.
type labelSampler struct {
	sets []LabelSet
	cum  []uint64 // cum[i] = sum of counts of sets[0..i]
}

func newLabelSampler(sets []LabelSet) (*labelSampler, error) {
	s := &labelSampler{sets: sets, cum: make([]uint64, len(sets))}
	var total uint64
	for i, ls := range sets {
		if ls.Count <= 0 || len(ls.Labels) == 0 {
			return nil, fmt.Errorf("synth: label set %d (%q) has count %d and %d labels", i, ls.Key(), ls.Count, len(ls.Labels))
		}
		total += uint64(ls.Count)
		s.cum[i] = total
	}
	if total == 0 {
		return nil, fmt.Errorf("synth: empty label-set table")
	}
	return s, nil
}

// draw returns a fresh copy of a label set chosen with probability Count/total.
func (s *labelSampler) draw(r *rng) []int {
	u := r.uint64n(s.cum[len(s.cum)-1])
	i, _ := slices.BinarySearchFunc(s.cum, u, func(c, u uint64) int {
		if c <= u {
			return -1
		}
		return 1
	})
	return slices.Clone(s.sets[i].Labels)
}
