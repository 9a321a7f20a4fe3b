package torch

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/hpa-plates/hpa/internal/model"
)

// fixedBatch is a small deterministic batch with multi-hot targets.
func fixedBatch(s model.Spec, n, hw int, seed uint64) (x, y []float32) {
	rng := rand.New(rand.NewPCG(seed, 77))
	x = randInput(rng, n*s.InChans*hw*hw)
	y = make([]float32, n*s.NumClasses)
	for i := range y {
		if rng.Float64() < 0.15 {
			y[i] = 1
		}
	}
	return x, y
}

func sigmoid(v float64) float64 { return 1 / (1 + math.Exp(-v)) }

// Go-side formulas of the three losses, from the logits the step reports.
func goLoss(kind LossKind, gamma float64, logits, y []float32, classes int) float64 {
	n := len(y) / classes
	switch kind {
	case LossBCE, LossFocal:
		s := 0.0
		for i := range y {
			x, t := float64(logits[i]), float64(y[i])
			ce := math.Max(x, 0) - x*t + math.Log1p(math.Exp(-math.Abs(x)))
			if kind == LossFocal {
				p := sigmoid(x)
				pt := p*t + (1-p)*(1-t)
				ce *= math.Pow(1-pt, gamma)
			}
			s += ce
		}
		return s / float64(len(y))
	default:
		f1 := 0.0
		for k := 0; k < classes; k++ {
			var tp, fp, fn float64
			for i := 0; i < n; i++ {
				p, t := sigmoid(float64(logits[i*classes+k])), float64(y[i*classes+k])
				tp += p * t
				fp += p * (1 - t)
				fn += (1 - p) * t
			}
			f1 += 2 * tp / (2*tp + fp + fn + 1e-7)
		}
		return 1 - f1/float64(classes)
	}
}

func TestLossesMatchFormulas(t *testing.T) {
	l := openLib(t)
	s := preset(t, "seresnext_tiny", model.StemMaxPool)
	x, y := fixedBatch(s, 4, 64, 1)
	for _, c := range []StepOptions{{Loss: LossBCE}, {Loss: LossFocal, FocalGamma: 2}, {Loss: LossSoftF1}} {
		m := newModel(t, l, s, 3)
		opt, err := NewSGD(m, SGDOptions{LR: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		r, err := m.TrainStep(opt, x, 4, 64, 64, y, c)
		if err != nil {
			t.Fatal(err)
		}
		want := goLoss(c.Loss, c.FocalGamma, r.Logits, y, s.NumClasses)
		if math.Abs(float64(r.Loss)-want) > 1e-5*math.Max(1, want) {
			t.Errorf("%v: shim loss %v, formula %v", c.Loss, r.Loss, want)
		}
		// The reported logits are those of the training-mode forward before the update.
		m2 := newModel(t, l, s, 3)
		fwd, _ := m2.Forward(x, 4, 64, 64, true)
		if d := maxAbsDiff(fwd, r.Logits); d > 1e-5 {
			t.Errorf("%v: step logits differ from a training-mode forward by %g", c.Loss, d)
		}
	}
}

func trainLosses(t *testing.T, l *Lib, s model.Spec, seed uint64, steps int, o SGDOptions, so StepOptions) ([]float32, model.Weights) {
	t.Helper()
	m := newModel(t, l, s, seed)
	opt, err := NewSGD(m, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(opt.Close)
	x, y := fixedBatch(s, 4, 64, 2)
	var losses []float32
	for i := 0; i < steps; i++ {
		r, err := m.TrainStep(opt, x, 4, 64, 64, y, so)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, r.Loss)
	}
	w, err := m.Weights()
	if err != nil {
		t.Fatal(err)
	}
	return losses, w
}

func TestTrainReproducible(t *testing.T) {
	l := openLib(t)
	s := preset(t, "seresnext_tiny", model.StemConv)
	o := SGDOptions{LR: 0.05, Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true}
	l1, w1 := trainLosses(t, l, s, 11, 2, o, StepOptions{Loss: LossBCE})
	l2, w2 := trainLosses(t, l, s, 11, 2, o, StepOptions{Loss: LossBCE})
	if !reflect.DeepEqual(l1, l2) {
		t.Fatalf("same seed, different losses: %v vs %v", l1, l2)
	}
	if !reflect.DeepEqual(w1, w2) {
		t.Fatal("same seed, different weights after training")
	}
	if l1[0] == l1[1] {
		t.Fatal("the step did not change the model")
	}
}

func TestSGDReducesBCE(t *testing.T) {
	l := openLib(t)
	s := preset(t, "seresnext_tiny", model.StemMaxPool)
	losses, _ := trainLosses(t, l, s, 21, 12, SGDOptions{LR: 0.1, Momentum: 0.9}, StepOptions{Loss: LossBCE})
	t.Logf("BCE: %v", losses)
	if !(losses[len(losses)-1] < 0.5*losses[0]) {
		t.Fatalf("12 SGD steps on one batch should halve the BCE: %v", losses)
	}
}

func TestSetLR(t *testing.T) {
	l := openLib(t)
	s := preset(t, "seresnext_tiny", model.StemMaxPool)
	x, y := fixedBatch(s, 2, 64, 3)
	// lr changed to 0.2 must act like an optimizer created with 0.2.
	step := func(lr0, lr float64) model.Weights {
		m := newModel(t, l, s, 4)
		opt, err := NewSGD(m, SGDOptions{LR: lr0})
		if err != nil {
			t.Fatal(err)
		}
		if lr != lr0 {
			if err := opt.SetLR(lr); err != nil {
				t.Fatal(err)
			}
		}
		if opt.LR() != lr {
			t.Fatalf("LR() %v", opt.LR())
		}
		if _, err := m.TrainStep(opt, x, 2, 64, 64, y, StepOptions{}); err != nil {
			t.Fatal(err)
		}
		w, _ := m.Weights()
		return w
	}
	if !reflect.DeepEqual(step(0.01, 0.2), step(0.2, 0.2)) {
		t.Fatal("SetLR(0.2) does not act like lr 0.2")
	}
	if reflect.DeepEqual(step(0.01, 0.01), step(0.2, 0.2)) {
		t.Fatal("the learning rate has no effect")
	}
}

func TestTrainStepErrors(t *testing.T) {
	l := openLib(t)
	s := preset(t, "seresnext_tiny", model.StemMaxPool)
	m := newModel(t, l, s, 1)
	other := newModel(t, l, s, 1)
	x, y := fixedBatch(s, 2, 64, 1)
	if _, err := NewSGD(m, SGDOptions{LR: 0}); err == nil {
		t.Error("lr 0 accepted")
	}
	if _, err := NewSGD(m, SGDOptions{LR: 0.1, Nesterov: true}); err == nil || !strings.Contains(err.Error(), "nesterov") {
		t.Errorf("nesterov without momentum: %v", err)
	}
	opt, err := NewSGD(m, SGDOptions{LR: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	var ie *InputError
	if _, err := other.TrainStep(opt, x, 2, 64, 64, y, StepOptions{}); !errors.As(err, &ie) {
		t.Errorf("foreign optimizer: %v", err)
	}
	if _, err := m.TrainStep(opt, x, 2, 64, 64, y[:5], StepOptions{}); !errors.As(err, &ie) {
		t.Errorf("short targets: %v", err)
	}
	bad := append([]float32(nil), y...)
	bad[3] = 2
	if _, err := m.TrainStep(opt, x, 2, 64, 64, bad, StepOptions{}); !errors.As(err, &ie) || !strings.Contains(err.Error(), "target 3") {
		t.Errorf("target out of range: %v", err)
	}
	if _, err := m.TrainStep(opt, x, 2, 64, 64, y, StepOptions{Loss: 7}); !errors.As(err, &ie) {
		t.Errorf("unknown loss: %v", err)
	}
	var te *Error
	if _, err := m.TrainStep(opt, x, 2, 64, 64, y, StepOptions{AMP: true}); !errors.As(err, &te) || !strings.Contains(err.Error(), "cuda") {
		t.Errorf("AMP on CPU: %v", err)
	}
	if err := opt.SetLR(-1); err == nil {
		t.Error("negative lr accepted")
	}
	opt.Close()
	if _, err := m.TrainStep(opt, x, 2, 64, 64, y, StepOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("closed optimizer: %v", err)
	}
	for _, n := range []string{"bce", "focal", "soft_f1"} {
		k, err := ParseLoss(n)
		if err != nil || k.String() != n {
			t.Errorf("ParseLoss(%q) = %v, %v", n, k, err)
		}
	}
	if _, err := ParseLoss("hinge"); err == nil {
		t.Error("unknown loss name accepted")
	}
}
