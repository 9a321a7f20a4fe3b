// Package runner runs a training run end to end, as `hpa train` does and a training worker will:
// the data and output staged from and to s3:// prefixes, internal/train on the libtorch backend,
// every snapshot exported as an ONNX member, progress on a terminal or in logs. It also writes the
// fold split of `hpa folds`.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx"
	"github.com/hpa-plates/hpa/internal/model/torch"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/serve"
	"github.com/hpa-plates/hpa/internal/train"
)

// Options are everything a training run needs (`hpa train`, config section train.*).
type Options struct {
	// Config is the trainer's recipe; DataDir and OutDir may be s3://bucket/prefix.
	Config train.Config
	// Device is cpu | cuda | cuda:N; AMP turns on bfloat16 autocast (cuda); Pretrained is a
	// timm-named safetensors checkpoint to start from.
	Device     string
	AMP        bool
	Pretrained string
	// Torch says which libtorch shim to open.
	Torch torch.Options
	// S3 is the object store of s3:// data and output; CacheDir holds their local copies.
	S3       objstore.Config
	CacheDir string
}

// ErrDataOut is returned by Run without data or output.
var ErrDataOut = errors.New("train: --data and --out are required")

// Run trains K folds x C snapshots of o.Config on the libtorch backend, exports every snapshot as
// an ONNX member and writes the model set: s3:// data is downloaded first, an s3:// output is
// trained in the cache and uploaded at the end (without checkpoints). Progress and warnings go to
// stderr, the summary to stdout.
func Run(ctx context.Context, o Options, stderr, stdout io.Writer) error {
	c := o.Config
	if c.DataDir == "" || c.OutDir == "" {
		return ErrDataOut
	}
	remote, err := stageIO(ctx, o, &c, stderr)
	if err != nil {
		return err
	}
	lib, err := torch.OpenWith(o.Torch)
	if err != nil {
		return err
	}
	if o.Pretrained != "" {
		c.Init = "timm" // keep the pretrained weights the backend loads
	}
	newModel := func(spec model.Spec, seed int64) (train.Backend, error) {
		return torch.NewBackend(lib, spec, o.Device, uint64(seed), torch.BackendOptions{
			Optimizer: c.Optimizer, LR: c.LR, Momentum: c.Momentum, WeightDecay: c.WeightDecay, Nesterov: c.Nesterov,
			Loss: c.Loss, FocalGamma: c.FocalGamma, AMP: o.AMP, Pretrained: o.Pretrained,
		})
	}
	export := func(path string, spec model.Spec, w model.Weights, size int) error {
		return onnx.ExportFile(path, spec, w, onnx.ExportOptions{InputSize: size, InputName: "input", OutputName: "logits", Opset: 17})
	}
	prog := newTrainProgress(stderr)
	res, err := train.Run(ctx, c, newModel, export, prog.update)
	prog.done()
	if err != nil {
		return err
	}
	for _, s := range res.Skipped {
		fmt.Fprintln(stderr, "skipped:", s)
	}
	for _, w := range res.Report.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if remote != nil {
		if err := remote.upload(ctx, stderr); err != nil {
			return err
		}
	}
	r := res.Report
	fmt.Fprintf(stdout, "model set: %s (%d members)\nout-of-fold macro-F1: %.4f (thresholds: %s)\nwall %.1fs, device %.1fs",
		res.ManifestPath, r.Members, r.MacroF1, r.Policy, r.WallSeconds, r.DeviceSeconds)
	if r.PricePerHour > 0 {
		fmt.Fprintf(stdout, ", cost %.4f", r.Cost)
	}
	fmt.Fprintln(stdout)
	return nil
}

// trainProgress renders fold / cycle / epoch / batch, loss and ETA on one line (terminal) or a line
// every few seconds (logs).
type trainProgress struct {
	w    io.Writer
	tty  bool
	last time.Time
	wide bool
}

func newTrainProgress(w io.Writer) *trainProgress {
	return &trainProgress{w: w, tty: serve.IsTerminal(w)}
}

func (p *trainProgress) update(pr train.Progress) {
	now := time.Now()
	if !p.tty && now.Sub(p.last) < 5*time.Second && pr.Phase == "train" && pr.Batch != pr.Batches-1 {
		return
	}
	p.last = now
	var line string
	switch pr.Phase {
	case "train":
		pct := 100 * float64(pr.Step+1) / float64(max(1, pr.TotalSteps))
		line = fmt.Sprintf("fold %d/%d  cycle %d/%d  epoch %d/%d  batch %d/%d  %5.1f%%  loss %.4f  lr %.4f  elapsed %s  ETA %s",
			pr.Fold+1, pr.Folds, pr.Cycle+1, pr.Cycles, pr.Epoch+1, pr.Epochs, pr.Batch+1, pr.Batches, pct, pr.Loss, pr.LR,
			pr.Elapsed.Round(time.Second), pr.ETA.Round(time.Second))
	default:
		line = fmt.Sprintf("fold %d/%d  cycle %d/%d  %s", pr.Fold+1, pr.Folds, pr.Cycle+1, pr.Cycles, map[string]string{
			"export": "exporting snapshot member", "oof": "out-of-fold predictions (TTA)"}[pr.Phase])
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.wide = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *trainProgress) done() {
	if p.tty && p.wide {
		fmt.Fprintln(p.w)
	}
}
