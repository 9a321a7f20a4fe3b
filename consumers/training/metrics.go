package training

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the Prometheus series of the training consumer (its own registry; the coordinator
// and the worker of one process share it).
type Metrics struct {
	Registry   *prometheus.Registry
	labelFiles *prometheus.CounterVec
	runs       *prometheus.CounterVec
	decisions  *prometheus.CounterVec
	foldJobs   *prometheus.CounterVec
	epochs     prometheus.Counter
	foldSec    prometheus.Histogram
	samples    *prometheus.GaugeVec
}

// NewMetrics creates the series (and Go and process collectors) on a new registry.
func NewMetrics() *Metrics {
	const ns = "hpa_training"
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		labelFiles: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "label_files_total",
			Help: "Label files read by the coordinator (result: valid, rejected)."}, []string{"result"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "runs_total",
			Help: "Training runs started and finished (state: started, done, failed)."}, []string{"state"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "decisions_total",
			Help: "Promotion decisions of the coordinator (action: promote, reject)."}, []string{"action"}),
		foldJobs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "fold_jobs_total",
			Help: "Fold jobs handled by this worker (result: done, failed, interrupted, skipped)."}, []string{"result"}),
		epochs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "epochs_total",
			Help: "Epochs trained by this worker (each ends with a checkpoint queued for S3)."}),
		foldSec: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "fold_job_seconds",
			Help: "Wall time of a fold job on this worker (staging, training, uploads).", Buckets: prometheus.ExponentialBuckets(1, 2, 16)}),
		samples: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "registry_samples",
			Help: "Labeled samples in the dataset registry (kind: all, new since the production dataset)."}, []string{"kind"}),
	}
	m.Registry.MustRegister(m.labelFiles, m.runs, m.decisions, m.foldJobs, m.epochs, m.foldSec, m.samples,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// The helpers accept a nil *Metrics (tests, library use without a listener).

func (m *Metrics) labelFile(result string) {
	if m != nil {
		m.labelFiles.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) run(state string) {
	if m != nil {
		m.runs.WithLabelValues(state).Inc()
	}
}

func (m *Metrics) decision(action string) {
	if m != nil {
		m.decisions.WithLabelValues(action).Inc()
	}
}

func (m *Metrics) foldJob(result string, seconds float64) {
	if m != nil {
		m.foldJobs.WithLabelValues(result).Inc()
		if result == "done" {
			m.foldSec.Observe(seconds)
		}
	}
}

func (m *Metrics) epoch() {
	if m != nil {
		m.epochs.Inc()
	}
}

func (m *Metrics) registry(r Registry) {
	if m != nil {
		m.samples.WithLabelValues("all").Set(float64(r.Samples))
		m.samples.WithLabelValues("new").Set(float64(r.NewSamples))
	}
}
