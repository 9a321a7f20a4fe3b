package model

import (
	"context"
	"io"
	"math"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// Predictor runs a model set on a batch of decoded samples and returns, per sample, one
// probability per class (labels.NumClasses values, averaged over members and test-time views).
// The ONNX Runtime ensemble (internal/model/ort) is one; tests use deterministic fakes. Labeling
// code (the inference consumer, `hpa label`) takes a Predictor, so it never imports a runtime.
type Predictor interface {
	Predict(ctx context.Context, batch []pipeline.Image4) ([][]float64, error)
	// Info identifies the model set in label and error records.
	Info() labels.ModelInfo
	// Thresholds turn its probabilities into labels.
	Thresholds() labels.Thresholds
}

// Loader loads the model set at location (a manifest path, a directory holding manifest.json,
// or whatever else the loader understands, e.g. s3://bucket/prefix). The closer frees it.
type Loader func(ctx context.Context, location string) (Predictor, io.Closer, error)

// Sigmoid is the logistic function, computed without overflow for large |x|: the probability of a
// class from its logit, in inference (ort) and in training's out-of-fold predictions alike.
func Sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	z := math.Exp(x)
	return z / (1 + z)
}
