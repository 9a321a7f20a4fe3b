package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/internal/config"
	"github.com/hpa-plates/hpa/internal/labeling"
	"github.com/hpa-plates/hpa/internal/model/ort"
)

func init() {
	subcommands = append(subcommands, newLabelCmd)
}

func newLabelCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "label DIR",
		Short: "Label every sample in DIR with a model set",
		Long: `Label every complete sample ({Id}_{red,green,blue,yellow}.{png,tif,jpg}) in DIR with the
ensemble described by the model manifest. Writes OUT/<id>.json (label JSON, schema hpa.label/v1) per
labeled sample, OUT/<id>.error.json (schema hpa.error/v1) per failed or incomplete sample and a Kaggle
submission CSV (Id,Predicted; labeled samples only, sorted by Id). Exit status 1 when any sample failed or was
incomplete, 0 when all were labeled.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, manifest, err := config.Label(v)
			if err != nil {
				return err
			}
			o.Stderr = cmd.ErrOrStderr()
			in, err := labeling.NewDirInput(args[0])
			if err != nil {
				return fmt.Errorf("label: %w", err)
			}
			rt := config.Runtime(v)
			rt.MaxBatch = o.Batch
			_, err = labeling.LabelDir(cmd.Context(), in, o, ort.NewLoader(rt, nil), manifest)
			if sf := (*labeling.SamplesFailedError)(nil); errors.As(err, &sf) {
				return &exitError{code: 1, err: err}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.String("model", "", "model manifest (manifest.json of a model set)")
	f.String("out", "out", "output directory")
	f.Int("batch", 8, "samples per inference batch (each with its TTA views)")
	f.String("csv", "", "submission CSV path (default OUT/submission.csv)")
	f.Int("workers", 0, "parallel image decoders (0 = number of CPUs)")
	f.String("provider", "cpu", "ONNX Runtime execution provider: cpu, cuda or tensorrt")
	f.Int("threads", 0, "ONNX Runtime intra-op threads (0 = ONNX Runtime default)")
	f.Int("inter-threads", 0, "ONNX Runtime inter-op threads (0 = ONNX Runtime default)")
	f.String("ort-library", ort.DefaultLibrary, "path of libonnxruntime.so")
	config.BindFlags(v, cmd, "label", map[string]string{
		"provider":      "ort.provider",
		"threads":       "ort.intra_threads",
		"inter-threads": "ort.inter_threads",
		"ort-library":   "ort.library",
	})
	return cmd
}
