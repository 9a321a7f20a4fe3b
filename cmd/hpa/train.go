package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/serve"
	"github.com/hpa-plates/hpa/internal/train/runner"
)

func init() {
	subcommands = append(subcommands, newTrainCmd)
}

func newTrainCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "train --data DIR|s3://BUCKET/PREFIX --out DIR|s3://BUCKET/PREFIX",
		Short: "Train a K-fold x snapshot SE-ResNeXt ensemble (the reference Kaggle recipe) and write a model set",
		Long: `Trains K folds x C cyclic-cosine snapshots on libtorch (CPU or CUDA), exports every snapshot as an
ONNX member, chooses thresholds on the out-of-fold predictions (with TTA) and writes the model set that
'hpa label --model' and the inference service load: manifest.json, members/, report.md/.json, curves.png.

The data is an HPA-format directory: train.csv (Id,Target) and the {Id}_{red,green,blue,yellow}.png
images in DIR/train/ or DIR. Killed and restarted with the same --out, training resumes from the last
finished epoch and continues exactly as an uninterrupted run would.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := serve.SignalContext(cmd.Context())
			defer stop()
			o, err := config.TrainRun(v)
			if err != nil {
				return err
			}
			return runner.Run(ctx, o, cmd.ErrOrStderr(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.String("data", "", "training data: a directory or s3://bucket/prefix with train.csv and the images")
	f.String("out", "", "output model-set directory or s3://bucket/prefix")
	f.String("arch", "seresnext50_32x4d", "architecture preset ("+strings.Join(model.PresetNames(), ", ")+")")
	f.String("stem", "", "stem after the 7x7 conv: maxpool or conv (default: the preset's)")
	f.Int("size", 512, "square input size in pixels")
	f.Int("folds", 5, "number of folds K")
	f.IntSlice("train-folds", nil, "train only these folds (default: all)")
	f.String("folds-file", "", "Id,fold CSV to use instead of the stratified split (see 'hpa folds')")
	f.Int("dedup-hamming", 6, "samples whose pHashes differ in at most this many bits share a fold (-1: off)")
	f.Int("cycles", 4, "cosine cycles C (one snapshot member per cycle)")
	f.Int("epochs", 20, "epochs per cycle E")
	f.Int("batch", 32, "minibatch size")
	f.String("optimizer", "adamw", "optimizer: adamw (decoupled weight decay) | sgd (the Kaggle recipe: Nesterov momentum; try --lr 0.1 --weight-decay 1e-4)")
	f.Float64("lr", 0.003, "peak learning rate of each cycle")
	f.Float64("lr-min", 0, "learning rate at the end of each cycle")
	f.Float64("momentum", 0.9, "SGD momentum")
	f.Float64("weight-decay", 0.05, "weight decay (decoupled for AdamW)")
	f.Bool("nesterov", true, "Nesterov momentum")
	f.String("loss", "bce", "loss: bce | focal | soft_f1")
	f.Float64("focal-gamma", 2, "focal loss exponent")
	f.String("init", "pytorch", "initial weights: pytorch (PyTorch module defaults) | timm (kaiming-normal fan_out, zero last BN)")
	f.Bool("prior-bias", false, "start the classifier bias at the classes' log prior odds")
	f.Int("warmup-epochs", 0, "linear learning-rate warm-up epochs at the start")
	f.String("snapshots", "auto", "snapshots in the model set: auto (each fold's last k, k chosen on out-of-fold macro-F1) | all")
	f.String("normalization", "data", "input normalization: data (per-channel mean/std of the training images) | constant (0.08/0.13)")
	f.String("sampler", "auto", "minibatch sampler: auto (balanced under 30 epochs per fold, random from 30) | balanced (minor/middle/major class groups) | random")
	f.Int("tta-views", 8, "TTA views for out-of-fold predictions and the manifest (1, 2, 4, 8)")
	f.Int64("seed", 1, "seed of folds, init, sampling and augmentation")
	f.Int("workers", 2, "decode + augment workers")
	f.Int("prefetch", 2, "batches prepared ahead of the device")
	f.String("device", "cpu", "cpu | cuda | cuda:N")
	f.Bool("amp", false, "bfloat16 autocast (cuda only)")
	f.String("pretrained", "", "timm-named safetensors checkpoint to start from (3-channel stems are adapted)")
	f.Bool("skip-missing", false, "train without samples whose images are missing (listed) instead of failing")
	f.Float64("price-per-hour", 0, "device-hour price for the report's cost line")
	f.String("name", "hpa", "model-set name (manifest)")
	f.String("version", "", "model-set version (default: a timestamp-free digest of the run's settings)")
	f.String("parent-version", "", "version of the model set this one replaces")
	config.BindFlags(v, cmd, "train", nil)
	return cmd
}
