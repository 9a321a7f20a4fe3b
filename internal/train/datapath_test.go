package train

import (
	"context"
	"encoding/csv"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/train/folds"
)

// recordingBackend is a Backend that records every training batch it receives (inputs and targets)
// and predicts zeros: the data path of Run without libtorch.
type recordingBackend struct {
	mu      *sync.Mutex
	batches *[]recordedBatch
	k       int
}

type recordedBatch struct {
	x, targets []float32
	n          int
}

func (b recordingBackend) TrainStep(x []float32, n, size int, targets []float32, lr float64) (float64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	*b.batches = append(*b.batches, recordedBatch{slices.Clone(x), slices.Clone(targets), n})
	return 0.5, nil
}
func (b recordingBackend) Predict(x []float32, n, size int) ([]float32, error) {
	return make([]float32, n*b.k), nil
}
func (b recordingBackend) Weights() (model.Weights, error)               { return model.Weights{}, nil }
func (b recordingBackend) SetWeights(model.Weights) error                { return nil }
func (b recordingBackend) OptimizerState() (map[string][]float32, error) { return nil, nil }
func (b recordingBackend) SetOptimizerState(map[string][]float32) error  { return nil }
func (b recordingBackend) Close() error                                  { return nil }

// recordRun runs cfg with the recording backend and returns the batches of the trained folds, in order.
func recordRun(t *testing.T, cfg Config) ([]recordedBatch, *Result) {
	t.Helper()
	var mu sync.Mutex
	var got []recordedBatch
	newModel := func(spec model.Spec, seed int64) (Backend, error) {
		return recordingBackend{&mu, &got, spec.NumClasses}, nil
	}
	export := func(path string, spec model.Spec, w model.Weights, size int) error {
		return os.WriteFile(path, []byte("member"), 0o644)
	}
	res, err := Run(context.Background(), cfg, newModel, export, nil)
	if err != nil {
		t.Fatal(err)
	}
	return got, res
}

// readPNGRef decodes one sample's four PNGs independently of the pipeline package (image/png, the
// RGBY order of the input channels), as [0,1] float64 planes.
func readPNGRef(t *testing.T, dir, id string, s int) [][]float64 {
	t.Helper()
	var out [][]float64
	for _, ch := range []string{"red", "green", "blue", "yellow"} {
		f, err := os.Open(filepath.Join(dir, "train", id+"_"+ch+".png"))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		g, ok := img.(*image.Gray)
		if !ok || g.Rect.Dx() != s || g.Rect.Dy() != s {
			t.Fatalf("%s %s: %T %v, want %dx%d gray", id, ch, img, img.Bounds(), s, s)
		}
		p := make([]float64, s*s)
		for y := 0; y < s; y++ {
			for x := 0; x < s; x++ {
				p[y*s+x] = float64(g.Pix[y*g.Stride+x]) / 255
			}
		}
		out = append(out, p)
	}
	return out
}

// refAugment applies a recorded draw to one plane the textbook way: LR flip (mirror columns), UD flip
// (mirror rows), k counter-clockwise quarter turns (np.rot90), contrast about the plane mean,
// brightness shift, clamp to [0,1], erase rectangle.
func refAugment(p []float64, s, ch int, d AugDraw) []float64 {
	cur := slices.Clone(p)
	at := func(q []float64, y, x int) float64 { return q[y*s+x] }
	if d.FlipLR {
		n := make([]float64, s*s)
		for y := 0; y < s; y++ {
			for x := 0; x < s; x++ {
				n[y*s+x] = at(cur, y, s-1-x)
			}
		}
		cur = n
	}
	if d.FlipUD {
		n := make([]float64, s*s)
		for y := 0; y < s; y++ {
			for x := 0; x < s; x++ {
				n[y*s+x] = at(cur, s-1-y, x)
			}
		}
		cur = n
	}
	for range d.Rot90 {
		n := make([]float64, s*s)
		for y := 0; y < s; y++ {
			for x := 0; x < s; x++ {
				n[y*s+x] = at(cur, x, s-1-y)
			}
		}
		cur = n
	}
	if d.Contrast != nil {
		var m float64
		for _, v := range cur {
			m += v
		}
		m /= float64(len(cur))
		for i, v := range cur {
			cur[i] = m + (v-m)*float64(d.Contrast[ch])
		}
	}
	for i := range cur {
		if d.Brightness != nil {
			cur[i] += float64(d.Brightness[ch])
		}
		cur[i] = math.Min(math.Max(cur[i], 0), 1)
	}
	if d.Erase {
		for y := d.EraseY; y < d.EraseY+d.EraseH; y++ {
			for x := d.EraseX; x < d.EraseX+d.EraseW; x++ {
				cur[y*s+x] = 0
			}
		}
	}
	return cur
}

func readLabelCSV(t *testing.T, dir string) (ids []string, lab [][]int) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "train.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows[1:] {
		var ls []int
		for _, s := range strings.Fields(r[1]) {
			c, err := strconv.Atoi(s)
			if err != nil {
				t.Fatal(err)
			}
			ls = append(ls, c)
		}
		ids = append(ids, r[0])
		lab = append(lab, ls)
	}
	return ids, lab
}

// dataPathConfig: 64 synthetic samples at 32 px, fold 0 of 2 trained for 3 epochs at batch 8, the
// default augmentations except expand (bilinear zoom; the reference below covers the rest).
func dataPathConfig(t *testing.T, sampler string) (Config, string) {
	data := synthData(t, 64, 32, 11)
	cfg := tinyConfig(t, data, t.TempDir())
	cfg.TrainFolds, cfg.Cycles, cfg.EpochsPerCycle, cfg.Sampler = []int{0}, 1, 3, sampler
	cfg.Augment = RecipeAugment()
	cfg.Augment.Expand = 0
	cfg.DedupHamming = -1
	return cfg, data
}

// checkDataStats compares norm with each channel's mean and std over all PNGs of the data set,
// computed here independently.
func checkDataStats(t *testing.T, data string, s int, norm model.Normalization) {
	t.Helper()
	ids, _ := readLabelCSV(t, data)
	var sum, sq [4]float64
	for _, id := range ids {
		for ch, p := range readPNGRef(t, data, id, s) {
			for _, v := range p {
				sum[ch] += v
				sq[ch] += v * v
			}
		}
	}
	n := float64(len(ids) * s * s)
	for ch := range 4 {
		m := sum[ch] / n
		sd := math.Sqrt(sq[ch]/n - m*m)
		if math.Abs(float64(norm.Mean[ch])-m) > 1e-5 || math.Abs(float64(norm.Std[ch])-sd) > 1e-5 {
			t.Errorf("channel %d: manifest mean/std %v/%v, data %v/%v", ch, norm.Mean[ch], norm.Std[ch], m, sd)
		}
		if math.Abs(m-0.08) < 1e-3 && math.Abs(sd-0.13) < 1e-3 {
			t.Errorf("channel %d statistics equal the old constants: the test cannot tell them apart", ch)
		}
	}
}

// rebuildSampler rebuilds fold 0's sampler of a finished run from its folds.csv and train.csv, to
// know which sample each draw position holds.
func rebuildSampler(t *testing.T, cfg Config, data string) (Sampler, int, []string, [][]int) {
	t.Helper()
	ids, lab := readLabelCSV(t, data)
	byID, err := folds.ReadFile(filepath.Join(cfg.OutDir, "folds.csv"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &trainer{cfg: cfg, data: &dataset{ids: ids, labels: lab}, folds: make([]int, len(ids))}
	for i, id := range ids {
		tr.folds[i] = byID[id]
	}
	trainIdx, _ := tr.split(0)
	smp, err := tr.sampler(0, trainIdx)
	if err != nil {
		t.Fatal(err)
	}
	return smp, tr.batchesPerEpoch(0), ids, lab
}

// The tensor the model receives for every draw of an epoch equals an independent reference computed
// from the PNGs with the recorded augmentation draw, and each target row is the label set of THAT
// sample (the test fails if labels are permuted within a batch).
func TestDataPathMatchesReference(t *testing.T) {
	for _, sampler := range []string{"balanced", "random"} {
		t.Run(sampler, func(t *testing.T) {
			cfg, data := dataPathConfig(t, sampler)
			got, res := recordRun(t, cfg)
			// The normalization the batches use is the one the manifest records (inference uses it),
			// and it is each channel's mean and std over the training PNGs.
			norm := res.Manifest.Normalization
			checkDataStats(t, data, cfg.Size, norm)
			smp, spe, ids, lab := rebuildSampler(t, cfg, data)
			byID := map[string][]int{}
			for i, id := range ids {
				byID[id] = lab[i]
			}
			if len(got) != 3*spe {
				t.Fatalf("%d batches recorded, want %d", len(got), 3*spe)
			}
			c, s, k := 4, cfg.Size, cfg.Arch.NumClasses
			per := c * s * s
			checked := 0
			for e := 0; e < 3; e++ {
				pos := 0
				for bi, b := range smp.Epoch(e)[:spe] {
					rb := got[e*spe+bi]
					if rb.n != len(b) {
						t.Fatalf("epoch %d batch %d: %d rows, want %d", e, bi, rb.n, len(b))
					}
					for j, ex := range b {
						id := ids[ex]
						// targets: exactly this sample's labels
						want := make([]float32, k)
						for _, l := range byID[id] {
							want[l] = 1
						}
						if !slices.Equal(rb.targets[j*k:(j+1)*k], want) {
							t.Fatalf("epoch %d batch %d row %d (%s): targets %v, want labels %v", e, bi, j, id, rb.targets[j*k:(j+1)*k], byID[id])
						}
						d := cfg.Augment.Draw(c, s, AugmentRNG(uint64(cfg.Seed), e, pos+j))
						ref := readPNGRef(t, data, id, s)
						x := rb.x[j*per : (j+1)*per]
						for ch := 0; ch < c; ch++ {
							r := refAugment(ref[ch], s, ch, d)
							for i, v := range r {
								norm := (v - float64(norm.Mean[ch])) / float64(norm.Std[ch])
								if math.Abs(float64(x[ch*s*s+i])-norm) > 1e-4 {
									t.Fatalf("epoch %d batch %d row %d (%s) channel %d pixel %d: %v, reference %v (draw %+v)",
										e, bi, j, id, ch, i, x[ch*s*s+i], norm, d)
								}
							}
						}
						checked++
					}
					pos += len(b)
				}
			}
			if checked < 3*spe*cfg.BatchSize {
				t.Fatalf("checked %d rows", checked)
			}
		})
	}
}

// Every repeat of an example within an epoch is a new augmented view (the balanced sampler repeats
// rare examples; identical repeats were the sawtooth of issue 7), and every epoch is reshuffled.
func TestDataPathRepeatsAreNewViewsAndEpochsReshuffle(t *testing.T) {
	cfg, data := dataPathConfig(t, "balanced")
	cfg.Balance.MaxRepeat = 0 // many repeats of the rare examples within an epoch
	got, _ := recordRun(t, cfg)
	smp0, spe, _, _ := rebuildSampler(t, cfg, data)
	// The balanced sampler does repeat examples within an epoch here (so the check is not vacuous).
	sampleRepeats := 0
	for e := 0; e < 3; e++ {
		n := map[int]int{}
		for _, b := range smp0.Epoch(e)[:spe] {
			for _, ex := range b {
				if n[ex]++; n[ex] > 1 {
					sampleRepeats++
				}
			}
		}
	}
	if sampleRepeats < 10 {
		t.Fatalf("only %d repeated draws of a sample within an epoch; the check needs repeats", sampleRepeats)
	}
	// Identify rows by their targets + a hash of the tensor: repeats of one sample within an epoch
	// (same targets, same source) must not have identical tensors.
	per := 4 * cfg.Size * cfg.Size
	k := cfg.Arch.NumClasses
	repeats := 0
	for e := 0; e < 3; e++ {
		seen := map[string]bool{}
		for _, rb := range got[e*spe : (e+1)*spe] {
			for j := 0; j < rb.n; j++ {
				key := string(f32bytes(rb.x[j*per:(j+1)*per])) + string(f32bytes(rb.targets[j*k:(j+1)*k]))
				if seen[key] {
					repeats++
				}
				seen[key] = true
			}
		}
	}
	if repeats > 0 {
		t.Errorf("%d draws within an epoch were identical tensors of an earlier draw (repeats must be new views)", repeats)
	}
	// Reshuffling, on label sets where the balanced sampler repeats the rare group.
	labels := syntheticLabels(400)
	s, err := NewBalancedSampler(labels, 28, 32, 12, DefaultBalance(), 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, smp := range []Sampler{s, RandomSampler{N: 400, BatchSize: 32, Seed: 3}} {
		e0, e1 := smp.Epoch(0), smp.Epoch(1)
		if slices.EqualFunc(e0, e1, func(a, b []int) bool { return slices.Equal(a, b) }) {
			t.Errorf("%T: epoch 1 repeats epoch 0's batches", smp)
		}
		first := e0[0]
		same := 0
		for e := 1; e < 6; e++ {
			if slices.Equal(smp.Epoch(e)[0], first) {
				same++
			}
		}
		if same > 0 {
			t.Errorf("%T: the first batch recurs in %d of 5 later epochs", smp, same)
		}
	}
}

// The label density of batches does not drift along an epoch: averaged over many epochs, the number
// of positive labels per batch (and of rare-group examples) in the first third of an epoch equals
// that of the last third, for both samplers.
func TestSamplerLabelDensityStationary(t *testing.T) {
	labels := syntheticLabels(2000)
	bal, err := NewBalancedSampler(labels, 28, 32, 62, DefaultBalance(), 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, smp := range []Sampler{bal, RandomSampler{N: 2000, BatchSize: 32, Seed: 5}} {
		var thirds [3]float64
		var rare, nb [3]float64
		for e := 0; e < 40; e++ {
			ep := smp.Epoch(e)
			for bi, b := range ep {
				third := bi * 3 / len(ep)
				nb[third]++
				for _, i := range b {
					thirds[third] += float64(len(labels[i]))
					if slices.Contains(labels[i], 27) {
						rare[third]++
					}
				}
			}
		}
		for i := range 3 {
			thirds[i] /= nb[i]
			rare[i] /= nb[i]
		}
		for i := 1; i < 3; i++ {
			if math.Abs(thirds[i]-thirds[0]) > 0.03*thirds[0] {
				t.Errorf("%T: labels per third of the epoch %v drift", smp, thirds)
			}
			if math.Abs(rare[i]-rare[0]) > 0.15*rare[0] {
				t.Errorf("%T: rare-class draws per third of the epoch %v drift", smp, rare)
			}
		}
	}
}

// initBackend records the weights the trainer sets before the first step.
type initBackend struct {
	recordingBackend
	spec model.Spec
	set  *[]model.Weights
}

func (b initBackend) Weights() (model.Weights, error) { return model.InitWeights(b.spec, 99), nil }
func (b initBackend) SetWeights(w model.Weights) error {
	*b.set = append(*b.set, w.Clone())
	return nil
}

// Init "pytorch" replaces the backend's init by model.InitWeightsPyTorch (seeded per fold) and
// PriorBias sets fc.bias to the log prior odds of the fold's training rows; the default keeps the
// backend's weights untouched.
func TestRunInitOptions(t *testing.T) {
	data := synthData(t, 48, 32, 4)
	run := func(init string, prior bool) ([]model.Weights, string) {
		cfg := tinyConfig(t, data, t.TempDir())
		cfg.TrainFolds, cfg.Cycles, cfg.EpochsPerCycle, cfg.Init, cfg.PriorBias = []int{1}, 1, 1, init, prior
		var set []model.Weights
		var mu sync.Mutex
		var got []recordedBatch
		newModel := func(spec model.Spec, seed int64) (Backend, error) {
			return initBackend{recordingBackend{&mu, &got, spec.NumClasses}, spec, &set}, nil
		}
		export := func(path string, spec model.Spec, w model.Weights, size int) error {
			return os.WriteFile(path, nil, 0o644)
		}
		if _, err := Run(context.Background(), cfg, newModel, export, nil); err != nil {
			t.Fatal(err)
		}
		return set, cfg.OutDir
	}
	if set, _ := run("timm", false); len(set) != 0 {
		t.Errorf("default init set weights %d times", len(set))
	}
	set, out := run("pytorch", true)
	if len(set) != 1 {
		t.Fatalf("weights set %d times", len(set))
	}
	w := set[0]
	spec, _ := model.Preset("seresnext_tiny")
	want := model.InitWeightsPyTorch(spec, 1+1) // seed 1, fold 1
	if !slices.Equal(w["layer2.0.conv2.weight"], want["layer2.0.conv2.weight"]) {
		t.Error("conv weights are not PyTorch's init for (seed, fold)")
	}
	// fc.bias: smoothed log odds of each class among fold 1's training rows.
	ids, lab := readLabelCSV(t, data)
	byID, err := folds.ReadFile(filepath.Join(out, "folds.csv"))
	if err != nil {
		t.Fatal(err)
	}
	var count [28]float64
	n := 0
	for i, id := range ids {
		if byID[id] == 1 {
			continue
		}
		n++
		for _, c := range lab[i] {
			count[c]++
		}
	}
	for c, v := range w["fc.bias"] {
		p := (count[c] + 0.5) / (float64(n) + 1)
		if wantB := float32(math.Log(p / (1 - p))); v != wantB {
			t.Errorf("fc.bias[%d] = %v, want log odds %v (%v of %d rows)", c, v, wantB, count[c], n)
		}
	}
}
