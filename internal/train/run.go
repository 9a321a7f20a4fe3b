package train

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/train/eval"
	"github.com/hpa-plates/hpa/internal/train/folds"
)

// Exporter writes one member: the weights of a snapshot as an ONNX file.
type Exporter func(path string, spec model.Spec, w model.Weights, size int) error

// Result is what a finished run produced.
type Result struct {
	ManifestPath string
	Manifest     *model.Manifest
	Report       *eval.Report
	Skipped      []string // samples dropped for missing images (with --skip-missing)
}

type trainer struct {
	cfg      Config
	data     *dataset
	folds    []int
	newModel BackendFactory
	export   Exporter
	progress func(Progress)
	norm     pipeline.Norm
	start    time.Time
	// near-duplicate groups found by the pHash (groups of 2 or more, and the samples in them)
	dupGroups, dupSamples int
	// run-wide step accounting for the ETA
	stepsDone, stepsTotal int
	stepsAtStart          int
}

// Run trains every fold (resuming from checkpoints in OutDir), exports the K x C members, chooses
// thresholds on the out-of-fold predictions, and writes manifest.json, report.json/.md and curves.png.
func Run(ctx context.Context, cfg Config, newModel BackendFactory, export Exporter, progress func(Progress)) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = func(Progress) {}
	}
	order, err := pipeline.ParseChannelOrder(pipeline.ChannelNames[:cfg.Arch.InChans])
	if err != nil {
		return nil, err
	}
	// Keep decoded planes in memory when they fit in ~4 GiB.
	perSample := cfg.Arch.InChans * cfg.Size * cfg.Size
	data, skipped, err := loadDataset(cfg.DataDir, cfg.Size, order, cfg.Decode, cfg.SkipMissing, (4<<30)/perSample)
	if err != nil {
		return nil, err
	}
	t := &trainer{cfg: cfg, data: data, newModel: newModel, export: export, progress: progress, start: time.Now(),
		norm: pipeline.Norm{Mean: cfg.Normalization.Mean, Std: cfg.Normalization.Std}}
	if t.folds, err = t.assignFolds(); err != nil {
		return nil, err
	}
	if cfg.NormFromData {
		// Per-channel statistics of the training data replace the constant normalization; the
		// manifest records them, so inference normalizes the same way.
		if t.cfg.Normalization, err = data.channelStats(cfg.Workers); err != nil {
			return nil, err
		}
		t.norm = pipeline.Norm{Mean: t.cfg.Normalization.Mean, Std: t.cfg.Normalization.Std}
	}
	if err := os.MkdirAll(filepath.Join(cfg.OutDir, "members"), 0o755); err != nil {
		return nil, err
	}
	if err := t.writeFoldsCSV(); err != nil {
		return nil, err
	}
	train := t.foldsToTrain()
	// ETA accounting: steps of every fold to train.
	for _, f := range train {
		t.stepsTotal += t.schedule(f).TotalSteps()
	}
	fold := make([]*checkpoint, cfg.Folds)
	for _, f := range train {
		ck, err := t.trainFold(ctx, f)
		if err != nil {
			return nil, err
		}
		fold[f] = ck
	}
	if cfg.TrainOnly {
		return &Result{Skipped: skipped}, nil
	}
	return t.finish(fold, train, skipped)
}

func (t *trainer) foldsToTrain() []int {
	if len(t.cfg.TrainFolds) > 0 {
		return t.cfg.TrainFolds
	}
	out := make([]int, t.cfg.Folds)
	for i := range out {
		out[i] = i
	}
	return out
}

// assignFolds reads FoldsFile or runs the stratified split on the label matrix.
func (t *trainer) assignFolds() ([]int, error) {
	if t.cfg.FoldsFile != "" {
		return readFoldsFile(t.cfg.FoldsFile, t.data.ids, t.cfg.Folds)
	}
	var groups []int
	if t.cfg.DedupHamming >= 0 {
		var err error
		if groups, err = t.nearDuplicateGroups(); err != nil {
			return nil, err
		}
	}
	return folds.StratifiedKFold(t.data.labels, t.cfg.Arch.NumClasses, folds.Options{K: t.cfg.Folds, Seed: uint64(t.cfg.Seed), Groups: groups})
}

// nearDuplicateGroups pHashes every sample (the mean of its green and blue planes at the training
// size: protein and nuclei identify a field of view) and groups samples within DedupHamming bits, so
// near-duplicate images never sit on both sides of a fold boundary. Decoding here also fills the
// sample cache the first epoch then reads.
func (t *trainer) nearDuplicateGroups() ([]int, error) {
	var g, b = -1, -1
	for i, ch := range t.data.order {
		switch ch {
		case pipeline.Green:
			g = i
		case pipeline.Blue:
			b = i
		}
	}
	if g < 0 || b < 0 {
		return nil, fmt.Errorf("train: near-duplicate hashing needs the green and blue channels")
	}
	n, s := len(t.data.ids), t.cfg.Size
	hashes := make([]uint64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range max(1, t.cfg.Workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mean := make([]uint8, s*s)
			for i := range next {
				p, err := t.data.planes(i)
				if err != nil {
					errs[i] = err
					continue
				}
				gp, bp := p[g*s*s:(g+1)*s*s], p[b*s*s:(b+1)*s*s]
				for j := range mean {
					mean[j] = uint8((uint16(gp[j]) + uint16(bp[j]) + 1) / 2)
				}
				hashes[i], errs[i] = folds.PHash(folds.GrayPlane{W: s, H: s, Pix: mean})
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	groups := folds.GroupByHash(hashes, t.cfg.DedupHamming)
	size := map[int]int{}
	for _, gid := range groups {
		size[gid]++
	}
	for _, c := range size {
		if c > 1 {
			t.dupGroups++
			t.dupSamples += c
		}
	}
	return groups, nil
}

func readFoldsFile(path string, ids []string, k int) ([]int, error) {
	byID, err := folds.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]int, len(ids))
	for i, id := range ids {
		f, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("%s: no fold for sample %s", path, id)
		}
		if f >= k {
			return nil, fmt.Errorf("%s: sample %s in fold %d, but --folds is %d", path, id, f, k)
		}
		out[i] = f
	}
	return out, nil
}

func (t *trainer) writeFoldsCSV() error {
	f, err := os.Create(filepath.Join(t.cfg.OutDir, "folds.csv"))
	if err != nil {
		return err
	}
	ex := make([]folds.Example, len(t.data.ids))
	for i, id := range t.data.ids {
		ex[i] = folds.Example{ID: id, Labels: t.data.labels[i]}
	}
	if err := folds.Write(f, ex, t.folds); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// split returns the training and validation example indices of fold f.
func (t *trainer) split(f int) (trainIdx, valIdx []int) {
	for i, g := range t.folds {
		if g == f {
			valIdx = append(valIdx, i)
		} else {
			trainIdx = append(trainIdx, i)
		}
	}
	return
}

func (t *trainer) batchesPerEpoch(f int) int {
	tr, _ := t.split(f)
	return max(1, len(tr)/t.cfg.BatchSize)
}

func (t *trainer) schedule(f int) CyclicCosine {
	spe := t.batchesPerEpoch(f)
	return CyclicCosine{Max: t.cfg.LR, Min: t.cfg.LRMin, Cycles: t.cfg.Cycles, EpochsPerCycle: t.cfg.EpochsPerCycle, StepsPerEpoch: spe,
		WarmupSteps: t.cfg.WarmupEpochs * spe}
}

func (t *trainer) sampler(f int, trainIdx []int) (Sampler, error) {
	seed := uint64(t.cfg.Seed)*1000003 + uint64(f)
	if t.cfg.SamplerFor() == "random" {
		return mapped{RandomSampler{N: len(trainIdx), BatchSize: t.cfg.BatchSize, Seed: seed}, trainIdx}, nil
	}
	labels := make([][]int, len(trainIdx))
	for i, ex := range trainIdx {
		labels[i] = t.data.labels[ex]
	}
	s, err := NewBalancedSampler(labels, t.cfg.Arch.NumClasses, t.cfg.BatchSize, t.batchesPerEpoch(f), t.cfg.Balance, seed)
	if err != nil {
		return nil, err
	}
	return mapped{s, trainIdx}, nil
}

// mapped turns a sampler over positions 0..n-1 into one over dataset indices.
type mapped struct {
	s   Sampler
	idx []int
}

func (m mapped) Epoch(e int) [][]int {
	bs := m.s.Epoch(e)
	for _, b := range bs {
		for i, p := range b {
			b[i] = m.idx[p]
		}
	}
	return bs
}

func (t *trainer) ckptPath(f int) string {
	return filepath.Join(t.cfg.OutDir, "checkpoints", fmt.Sprintf("fold%d.ckpt", f))
}

// trainFold trains fold f from its checkpoint (or from scratch) to the end, exporting a member at the
// end of every cycle, and returns the final checkpoint (with the snapshot OOF predictions).
func (t *trainer) trainFold(ctx context.Context, f int) (*checkpoint, error) {
	path := t.ckptPath(f)
	ck := &checkpoint{Fold: f}
	found, err := loadGob(path, ck)
	if err != nil {
		return nil, err
	}
	sch := t.schedule(f)
	if found && ck.Done {
		t.stepsDone += sch.TotalSteps()
		t.stepsAtStart += sch.TotalSteps()
		return ck, nil
	}
	m, err := t.newModel(t.cfg.Arch, t.cfg.Seed+int64(f))
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if found {
		if err := m.SetWeights(ck.Weights); err != nil {
			return nil, fmt.Errorf("resume fold %d: %w", f, err)
		}
		if err := m.SetOptimizerState(ck.Optimizer); err != nil {
			return nil, fmt.Errorf("resume fold %d: %w", f, err)
		}
	}
	t.stepsDone += ck.NextStep
	t.stepsAtStart += ck.NextStep
	trainIdx, valIdx := t.split(f)
	if !found {
		if err := t.initWeights(m, f, trainIdx); err != nil {
			return nil, fmt.Errorf("fold %d init: %w", f, err)
		}
	}
	smp, err := t.sampler(f, trainIdx)
	if err != nil {
		return nil, err
	}
	spe := sch.StepsPerEpoch
	epochs := t.cfg.Cycles * t.cfg.EpochsPerCycle
	foldStart := time.Now()
	secondsBefore := ck.Seconds
	for epoch := ck.NextStep / spe; epoch < epochs; epoch++ {
		batches := smp.Epoch(epoch)[:spe]
		ectx, cancel := context.WithCancel(ctx)
		prep := t.loader(ectx, batches, epoch)
		for bi := 0; bi < spe; bi++ {
			if err := ctx.Err(); err != nil {
				cancel()
				return nil, err
			}
			p, ok := <-prep
			if !ok {
				cancel()
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				return nil, fmt.Errorf("fold %d epoch %d: data loader stopped", f, epoch)
			}
			if p.err != nil {
				cancel()
				return nil, fmt.Errorf("fold %d: %w", f, p.err)
			}
			step := epoch*spe + bi
			lr := sch.LR(step)
			loss, err := m.TrainStep(p.x, p.n, t.cfg.Size, p.targets, lr)
			if err != nil {
				cancel()
				return nil, fmt.Errorf("fold %d step %d: %w", f, step, err)
			}
			ck.Losses = append(ck.Losses, loss)
			ck.LRs = append(ck.LRs, lr)
			t.stepsDone++
			t.report(Progress{Fold: f, Folds: t.cfg.Folds, Cycle: epoch / t.cfg.EpochsPerCycle, Cycles: t.cfg.Cycles,
				Epoch: epoch % t.cfg.EpochsPerCycle, Epochs: t.cfg.EpochsPerCycle, Batch: bi, Batches: spe,
				Step: step, TotalSteps: sch.TotalSteps(), Loss: loss, LR: lr, Phase: "train"})
		}
		cancel()
		ck.NextStep = (epoch + 1) * spe
		if cycle, ok := sch.SnapshotAfter(ck.NextStep - 1); ok {
			if err := t.snapshot(m, ck, f, cycle, valIdx); err != nil {
				return nil, err
			}
		}
		if ck.Weights, err = m.Weights(); err != nil {
			return nil, err
		}
		if ck.Optimizer, err = m.OptimizerState(); err != nil {
			return nil, err
		}
		ck.Seconds = secondsBefore + time.Since(foldStart).Seconds()
		ck.Done = epoch == epochs-1
		if err := saveGob(path, ck); err != nil {
			return nil, fmt.Errorf("checkpoint fold %d: %w", f, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return ck, nil
}

// initWeights replaces the backend's initial weights by PyTorch's default init (cfg.Init "pytorch")
// and/or sets the classifier bias to the log prior odds of each class in the training rows.
func (t *trainer) initWeights(m Backend, f int, trainIdx []int) error {
	if t.cfg.Init != "pytorch" && !t.cfg.PriorBias {
		return nil
	}
	w, err := m.Weights()
	if err != nil {
		return err
	}
	if t.cfg.Init == "pytorch" {
		for name, v := range model.InitWeightsPyTorch(t.cfg.Arch, t.cfg.Seed+int64(f)) {
			w[name] = v
		}
	}
	if t.cfg.PriorBias {
		k := t.cfg.Arch.NumClasses
		count := make([]float64, k)
		for _, ex := range trainIdx {
			for _, c := range t.data.labels[ex] {
				count[c]++
			}
		}
		bias := make([]float32, k)
		for c := range bias {
			// smoothed rate, kept away from 0 and 1
			p := (count[c] + 0.5) / (float64(len(trainIdx)) + 1)
			bias[c] = float32(math.Log(p / (1 - p)))
		}
		w["fc.bias"] = bias
	}
	return m.SetWeights(w)
}

func (t *trainer) report(p Progress) {
	p.Elapsed = time.Since(t.start)
	if done := t.stepsDone - t.stepsAtStart; done > 0 {
		per := p.Elapsed / time.Duration(done)
		p.ETA = per * time.Duration(t.stepsTotal-t.stepsDone)
	}
	t.progress(p)
}

// snapshot exports the current weights as member (fold f, cycle c) and records its out-of-fold
// predictions (with TTA) on the validation rows.
func (t *trainer) snapshot(m Backend, ck *checkpoint, f, c int, valIdx []int) error {
	w, err := m.Weights()
	if err != nil {
		return err
	}
	name := fmt.Sprintf("members/fold%d_cycle%d.onnx", f, c)
	path := filepath.Join(t.cfg.OutDir, name)
	t.report(Progress{Fold: f, Folds: t.cfg.Folds, Cycle: c, Cycles: t.cfg.Cycles, Phase: "export"})
	if err := t.export(path, t.cfg.Arch, w, t.cfg.Size); err != nil {
		return fmt.Errorf("export %s: %w", name, err)
	}
	sum, err := model.FileSHA256(path)
	if err != nil {
		return err
	}
	t.report(Progress{Fold: f, Folds: t.cfg.Folds, Cycle: c, Cycles: t.cfg.Cycles, Phase: "oof"})
	probs, err := t.predictTTA(m, valIdx)
	if err != nil {
		return err
	}
	ck.SnapshotOOF = append(ck.SnapshotOOF, probs)
	ck.Members = append(ck.Members, model.Member{File: name, SHA256: sum, Fold: f, Snapshot: c})
	return nil
}

// predictTTA returns sigmoid probabilities averaged over the TTA views for the given examples.
func (t *trainer) predictTTA(m Backend, idx []int) ([][]float64, error) {
	c, s, k := t.cfg.Arch.InChans, t.cfg.Size, t.cfg.Arch.NumClasses
	v := t.cfg.TTAViews
	per := c * s * s
	bs := max(1, t.cfg.BatchSize/v)
	out := make([][]float64, len(idx))
	src := make([]float32, per)
	x := make([]float32, bs*v*per)
	for start := 0; start < len(idx); start += bs {
		n := min(bs, len(idx)-start)
		for j := 0; j < n; j++ {
			if err := t.data.fill(src, idx[start+j]); err != nil {
				return nil, err
			}
			if err := t.norm.ApplyFloat(src, c, s); err != nil {
				return nil, err
			}
			if err := pipeline.WriteViews(x[j*v*per:], src, c, s, v); err != nil {
				return nil, err
			}
		}
		logits, err := m.Predict(x[:n*v*per], n*v, s)
		if err != nil {
			return nil, err
		}
		for j := 0; j < n; j++ {
			p := make([]float64, k)
			for vi := 0; vi < v; vi++ {
				row := logits[(j*v+vi)*k : (j*v+vi+1)*k]
				for ci, l := range row {
					p[ci] += sigmoid(l)
				}
			}
			for ci := range p {
				p[ci] /= float64(v)
			}
			out[start+j] = p
		}
	}
	return out, nil
}
