package folds

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Options configure StratifiedKFold.
type Options struct {
	// K is the number of folds (>= 2). Zero means DefaultK.
	K int
	// Seed makes the split deterministic: the same labels, groups, K and seed give the same folds.
	Seed uint64
	// Groups, when not nil, holds a group id per example (e.g. from GroupByHash): all examples of a
	// group land in one fold. Groups are stratified as units with their summed label vector.
	Groups []int
	// MaxRepairSteps bounds the repair pass (0: 200 + 50 x number of classes x K).
	MaxRepairSteps int
}

// DefaultK is the default number of folds.
const DefaultK = 5

// Error is a bad input to the fold assignment.
type Error struct {
	Example int // index of the offending example, -1 when not tied to one
	Reason  string
}

func (e *Error) Error() string {
	if e.Example >= 0 {
		return fmt.Sprintf("folds: example %d: %s", e.Example, e.Reason)
	}
	return "folds: " + e.Reason
}

// foldUnit is what gets assigned to a fold: one example, or one group of examples.
type foldUnit struct {
	size int
	vec  []dimCount // sparse label counts, sorted by class; the size dimension is implicit
	sig  int        // index of the distinct (size, vec) signature
}

type dimCount struct{ dim, n int }

// StratifiedKFold assigns each example (labels[i] = its class ids in 0..numClasses-1) to a fold
// 0..K-1 and returns the fold per example.
//
// It runs iterative stratification (Sechidis, Tsoumakas & Vlahavas 2011, "On the stratification of
// multi-label data"): repeatedly take the label with the fewest unassigned examples and give each
// of its examples to the fold that still wants that label most (ties: the fold that wants the most
// examples overall, then a seeded random fold). A repair pass follows: a local search over moves
// and swaps of units between folds that lowers the squared deviation of every per-fold class count
// and fold size from its ideal share (total/K), always working on the worst cell first. On the HPA
// label matrix it ends with every class count and fold size within 1 of its ideal share.
//
// With Groups, a group is one unit (its size and summed label vector); big groups can make the
// +-1 balance unreachable, in which case the pass stops at the best split it finds.
func StratifiedKFold(labels [][]int, numClasses int, opt Options) ([]int, error) {
	k := opt.K
	if k == 0 {
		k = DefaultK
	}
	if k < 2 {
		return nil, &Error{Example: -1, Reason: fmt.Sprintf("need at least 2 folds, got %d", k)}
	}
	if numClasses <= 0 {
		return nil, &Error{Example: -1, Reason: fmt.Sprintf("need at least one class, got %d", numClasses)}
	}
	n := len(labels)
	if opt.Groups != nil && len(opt.Groups) != n {
		return nil, &Error{Example: -1, Reason: fmt.Sprintf("%d group ids for %d examples", len(opt.Groups), n)}
	}
	// Units: examples, or groups in order of first appearance.
	unitOf := make([]int, n)
	var members [][]int
	if opt.Groups == nil {
		members = make([][]int, n)
		for i := range n {
			unitOf[i] = i
			members[i] = []int{i}
		}
	} else {
		idx := make(map[int]int)
		for i, g := range opt.Groups {
			u, ok := idx[g]
			if !ok {
				u = len(members)
				idx[g] = u
				members = append(members, nil)
			}
			unitOf[i] = u
			members[u] = append(members[u], i)
		}
	}
	if len(members) < k {
		return nil, &Error{Example: -1, Reason: fmt.Sprintf("%d examples/groups cannot fill %d folds", len(members), k)}
	}
	units := make([]foldUnit, len(members))
	counts := make([]int, numClasses)
	sigIndex := make(map[string]int)
	var key strings.Builder
	for u, ms := range members {
		for i := range counts {
			counts[i] = 0
		}
		for _, i := range ms {
			for _, c := range labels[i] {
				if c < 0 || c >= numClasses {
					return nil, &Error{Example: i, Reason: fmt.Sprintf("class id %d outside 0..%d", c, numClasses-1)}
				}
				counts[c]++
			}
		}
		key.Reset()
		key.WriteString(strconv.Itoa(len(ms)))
		var vec []dimCount
		for c, m := range counts {
			if m > 0 {
				if opt.Groups == nil && m > 1 {
					return nil, &Error{Example: ms[0], Reason: fmt.Sprintf("class id %d repeated", c)}
				}
				vec = append(vec, dimCount{c, m})
				key.WriteByte(' ')
				key.WriteString(strconv.Itoa(c))
				key.WriteByte(':')
				key.WriteString(strconv.Itoa(m))
			}
		}
		s, ok := sigIndex[key.String()]
		if !ok {
			s = len(sigIndex)
			sigIndex[key.String()] = s
		}
		units[u] = foldUnit{size: len(ms), vec: vec, sig: s}
	}

	maxSteps := opt.MaxRepairSteps
	if maxSteps <= 0 {
		maxSteps = 200 + 50*numClasses*k
	}
	// The repair is a local search and can stop in a local minimum above the +-1 target (rarely: about
	// one split in fifty on the HPA labels); then the whole split is redone from another random stream
	// derived from the seed, and the best attempt is kept.
	var unitFold []int
	bestDev := math.Inf(1)
	for attempt := range foldAttempts {
		rng := rand.New(rand.NewPCG(opt.Seed, 0x9e3779b97f4a7c15+uint64(attempt)))
		uf := iterativeStratify(units, numClasses, k, n, rng)
		dev := repairFolds(units, uf, len(sigIndex), numClasses, k, maxSteps)
		if dev < bestDev {
			bestDev, unitFold = dev, uf
		}
		if bestDev <= 1+1e-9 {
			break
		}
	}

	folds := make([]int, n)
	for i := range n {
		folds[i] = unitFold[unitOf[i]]
	}
	return folds, nil
}

// iterativeStratify is Sechidis et al.'s algorithm over units with label counts.
func iterativeStratify(units []foldUnit, numClasses, k, n int, rng *rand.Rand) []int {
	order := rng.Perm(len(units))
	byClass := make([][]int, numClasses) // units with the class, in shuffled order
	remaining := make([]int, numClasses) // unassigned examples with the class
	var unlabeled []int
	for _, u := range order {
		if len(units[u].vec) == 0 {
			unlabeled = append(unlabeled, u)
		}
		for _, dc := range units[u].vec {
			byClass[dc.dim] = append(byClass[dc.dim], u)
			remaining[dc.dim] += dc.n
		}
	}
	// Desired counts: the ideal share of each fold, decremented as units land.
	desired := make([][]float64, k)
	desiredSize := make([]float64, k)
	for f := range k {
		desired[f] = make([]float64, numClasses)
		for c := range numClasses {
			desired[f][c] = float64(remaining[c]) / float64(k)
		}
		desiredSize[f] = float64(n) / float64(k)
	}
	fold := make([]int, len(units))
	for i := range fold {
		fold[i] = -1
	}
	cand := make([]int, 0, k)
	assign := func(u, f int) {
		fold[u] = f
		desiredSize[f] -= float64(units[u].size)
		for _, dc := range units[u].vec {
			desired[f][dc.dim] -= float64(dc.n)
			remaining[dc.dim] -= dc.n
		}
	}
	for {
		l := -1
		for c := range numClasses {
			if remaining[c] > 0 && (l < 0 || remaining[c] < remaining[l]) {
				l = c
			}
		}
		if l < 0 {
			break
		}
		for _, u := range byClass[l] {
			if fold[u] >= 0 {
				continue
			}
			cand = cand[:0]
			best := math.Inf(-1)
			for f := range k {
				switch d := desired[f][l]; {
				case d > best:
					best = d
					cand = append(cand[:0], f)
				case d == best:
					cand = append(cand, f)
				}
			}
			if len(cand) > 1 {
				cand = mostWanted(cand, desiredSize)
			}
			assign(u, cand[rng.IntN(len(cand))])
		}
	}
	for _, u := range unlabeled {
		all := make([]int, k)
		for f := range all {
			all[f] = f
		}
		cand = mostWanted(all, desiredSize)
		assign(u, cand[rng.IntN(len(cand))])
	}
	return fold
}

// mostWanted keeps the folds of cand with the largest desired size.
func mostWanted(cand []int, desiredSize []float64) []int {
	best := math.Inf(-1)
	out := cand[:0]
	for _, f := range cand {
		switch d := desiredSize[f]; {
		case d > best:
			best = d
			out = append(out[:0], f)
		case d == best:
			out = append(out, f)
		}
	}
	return out
}

// foldAttempts bounds the restarts of StratifiedKFold when the repair misses the +-1 target.
const foldAttempts = 5

// violationWeight is the extra cost per squared unit of deviation beyond 1 in the repair pass.
const violationWeight = 20

// repairFolds is the local search of StratifiedKFold: dimension numClasses is the fold size. It
// returns the largest remaining |deviation| over all folds and dimensions.
func repairFolds(units []foldUnit, fold []int, numSigs, numClasses, k, maxSteps int) float64 {
	dims := numClasses + 1
	total := make([]float64, dims)
	for _, u := range units {
		for _, dc := range u.vec {
			total[dc.dim] += float64(dc.n)
		}
		total[numClasses] += float64(u.size)
	}
	// dev[f][d] = count of dimension d in fold f minus its ideal share.
	dev := make([][]float64, k)
	for f := range k {
		dev[f] = make([]float64, dims)
		for d := range dims {
			dev[f][d] = -total[d] / float64(k)
		}
	}
	// Representative vector of each signature, and the units of each signature in each fold.
	sigVec := make([][]dimCount, numSigs)
	bySig := make([][][]int, k)
	for f := range k {
		bySig[f] = make([][]int, numSigs)
	}
	for i, u := range units {
		if sigVec[u.sig] == nil {
			v := append([]dimCount(nil), u.vec...)
			sigVec[u.sig] = append(v, dimCount{numClasses, u.size})
		}
		f := fold[i]
		bySig[f][u.sig] = append(bySig[f][u.sig], i)
		for _, dc := range sigVec[u.sig] {
			dev[f][dc.dim] += float64(dc.n)
		}
	}
	// present[f] lists the signatures with at least one unit in fold f (kept lazily: may hold empties).
	// sigDim[s*dims+d] = count of dimension d in signature s.
	sigDim := make([]int32, numSigs*dims)
	for s, v := range sigVec {
		for _, dc := range v {
			sigDim[s*dims+dc.dim] = int32(dc.n)
		}
	}
	var fromSigs, toSigs []int
	const eps = 1e-9
	// cost of one cell: squared deviation plus a steep penalty beyond the +-1 target, so a move that
	// fixes a violation may spend some of the slack of cells that are within target.
	phi := func(x float64) float64 {
		ax := math.Abs(x)
		if ax <= 1 {
			return x * x
		}
		return x*x + violationWeight*(ax-1)*(ax-1)
	}
	change := func(d int, f, g int, z float64) float64 {
		af, ag := dev[f][d], dev[g][d]
		return phi(af-z) - phi(af) + phi(ag+z) - phi(ag)
	}
	// delta of moving x(s) from f to g and x(t) from g to f.
	deltaSwap := func(f, g, s, t int) float64 {
		a, b := sigVec[s], sigVec[t]
		sum := 0.0
		i, j := 0, 0
		for i < len(a) || j < len(b) {
			var d, z int
			switch {
			case j >= len(b) || (i < len(a) && a[i].dim < b[j].dim):
				d, z = a[i].dim, a[i].n
				i++
			case i >= len(a) || b[j].dim < a[i].dim:
				d, z = b[j].dim, -b[j].n
				j++
			default:
				d, z = a[i].dim, a[i].n-b[j].n
				i++
				j++
			}
			if z != 0 {
				sum += change(d, f, g, float64(z))
			}
		}
		return sum
	}
	deltaMove := func(f, g, s int) float64 {
		sum := 0.0
		for _, dc := range sigVec[s] {
			sum += change(dc.dim, f, g, float64(dc.n))
		}
		return sum
	}
	apply := func(u, from, to int) {
		s := units[u].sig
		for _, dc := range sigVec[s] {
			dev[from][dc.dim] -= float64(dc.n)
			dev[to][dc.dim] += float64(dc.n)
		}
		l := bySig[from][s]
		for i, x := range l {
			if x == u {
				l[i] = l[len(l)-1]
				bySig[from][s] = l[:len(l)-1]
				break
			}
		}
		bySig[to][s] = append(bySig[to][s], u)
		fold[u] = to
	}
	type cell struct {
		f, d int
		v    float64
	}
	cells := make([]cell, 0, k*dims)
	maxDev := func() float64 {
		m := 0.0
		for f := range k {
			for d := range dims {
				m = math.Max(m, math.Abs(dev[f][d]))
			}
		}
		return m
	}
	for step := 0; step < maxSteps; step++ {
		cells = cells[:0]
		for f := range k {
			for d := range dims {
				if v := math.Abs(dev[f][d]); v >= 1-eps {
					cells = append(cells, cell{f, d, v})
				}
			}
		}
		if len(cells) == 0 {
			return maxDev()
		}
		// Worst cell first; stable order for determinism.
		sortCells(cells, func(a, b cell) bool {
			if a.v != b.v {
				return a.v > b.v
			}
			if a.f != b.f {
				return a.f < b.f
			}
			return a.d < b.d
		})
		improved := false
		for _, c := range cells {
			// Excess in (f,d): something carrying d leaves f. Deficit: something carrying d enters f.
			excess := dev[c.f][c.d] > 0
			bestDelta := -eps
			bestU, bestV, bestG := -1, -1, -1
			for g := range k {
				if g == c.f {
					continue
				}
				// from = the fold losing the unit that carries d; to = the other.
				from, to := c.f, g
				if !excess {
					from, to = g, c.f
				}
				fromSigs, toSigs = fromSigs[:0], toSigs[:0]
				for s := range numSigs {
					if len(bySig[from][s]) > 0 && sigDim[s*dims+c.d] > 0 {
						fromSigs = append(fromSigs, s)
					}
					if len(bySig[to][s]) > 0 {
						toSigs = append(toSigs, s)
					}
				}
				for _, s := range fromSigs {
					hs := sigDim[s*dims+c.d]
					if dl := deltaMove(from, to, s); dl < bestDelta {
						bestDelta, bestU, bestV, bestG = dl, bySig[from][s][len(bySig[from][s])-1], -1, g
					}
					for _, t := range toSigs {
						if sigDim[t*dims+c.d] >= hs {
							continue
						}
						if dl := deltaSwap(from, to, s, t); dl < bestDelta {
							bestDelta = dl
							bestU = bySig[from][s][len(bySig[from][s])-1]
							bestV = bySig[to][t][len(bySig[to][t])-1]
							bestG = g
						}
					}
				}
			}
			if bestU < 0 {
				continue
			}
			from, to := c.f, bestG
			if !excess {
				from, to = bestG, c.f
			}
			apply(bestU, from, to)
			if bestV >= 0 {
				apply(bestV, to, from)
			}
			improved = true
			break
		}
		if !improved {
			return maxDev()
		}
	}
	return maxDev()
}

func sortCells[T any](s []T, less func(a, b T) bool) {
	// insertion sort: the list is short (violating cells only)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && less(s[j], s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// Balance describes how evenly a fold assignment spreads examples and classes.
type Balance struct {
	K         int
	Sizes     []int   // examples per fold
	IdealSize float64 // examples / K
	Counts    [][]int // [fold][class] positives
	Totals    []int   // positives per class
	// MaxClassDev is the largest |Counts[f][c] - Totals[c]/K|; MaxSizeDev the largest |Sizes[f] - IdealSize|.
	MaxClassDev float64
	MaxSizeDev  float64
}

// ComputeBalance counts examples and class positives per fold.
func ComputeBalance(labels [][]int, folds []int, k, numClasses int) (*Balance, error) {
	if len(folds) != len(labels) {
		return nil, &Error{Example: -1, Reason: fmt.Sprintf("%d folds for %d examples", len(folds), len(labels))}
	}
	if k < 1 || numClasses < 0 {
		return nil, &Error{Example: -1, Reason: fmt.Sprintf("bad shape: %d folds, %d classes", k, numClasses)}
	}
	b := &Balance{K: k, Sizes: make([]int, k), Counts: make([][]int, k), Totals: make([]int, numClasses)}
	for f := range k {
		b.Counts[f] = make([]int, numClasses)
	}
	for i, ls := range labels {
		f := folds[i]
		if f < 0 || f >= k {
			return nil, &Error{Example: i, Reason: fmt.Sprintf("fold %d outside 0..%d", f, k-1)}
		}
		b.Sizes[f]++
		for _, c := range ls {
			if c < 0 || c >= numClasses {
				return nil, &Error{Example: i, Reason: fmt.Sprintf("class id %d outside 0..%d", c, numClasses-1)}
			}
			b.Counts[f][c]++
			b.Totals[c]++
		}
	}
	b.IdealSize = float64(len(labels)) / float64(k)
	for f := range k {
		b.MaxSizeDev = math.Max(b.MaxSizeDev, math.Abs(float64(b.Sizes[f])-b.IdealSize))
		for c := range numClasses {
			b.MaxClassDev = math.Max(b.MaxClassDev, math.Abs(float64(b.Counts[f][c])-float64(b.Totals[c])/float64(k)))
		}
	}
	return b, nil
}

// Write prints the per-fold sizes and the per-class counts per fold with their ideal share.
func (b *Balance) Write(w io.Writer, classNames []string) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "fold sizes (ideal %.1f):", b.IdealSize)
	for _, s := range b.Sizes {
		fmt.Fprintf(&sb, " %d", s)
	}
	fmt.Fprintf(&sb, "\n%-3s %-32s %7s %9s", "id", "class", "total", "ideal")
	for f := range b.K {
		fmt.Fprintf(&sb, " %6s", "f"+strconv.Itoa(f))
	}
	sb.WriteString("  maxdev\n")
	for c, tot := range b.Totals {
		name := ""
		if c < len(classNames) {
			name = classNames[c]
		}
		ideal := float64(tot) / float64(b.K)
		fmt.Fprintf(&sb, "%-3d %-32s %7d %9.1f", c, name, tot, ideal)
		dev := 0.0
		for f := range b.K {
			fmt.Fprintf(&sb, " %6d", b.Counts[f][c])
			dev = math.Max(dev, math.Abs(float64(b.Counts[f][c])-ideal))
		}
		fmt.Fprintf(&sb, "  %6.2f\n", dev)
	}
	fmt.Fprintf(&sb, "max class deviation %.2f, max fold-size deviation %.2f\n", b.MaxClassDev, b.MaxSizeDev)
	_, err := io.WriteString(w, sb.String())
	return err
}
