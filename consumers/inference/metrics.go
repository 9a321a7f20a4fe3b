package inference

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus series of one Service (its own registry, so several services can
// live in one process, e.g. replicas in tests).
type metrics struct {
	reg          *prometheus.Registry
	queueDepth   *prometheus.GaugeVec
	batchSize    prometheus.Histogram
	fetchSec     prometheus.Histogram
	computeSec   prometheus.Histogram
	writeSec     prometheus.Histogram
	labeled      prometheus.Counter
	unchanged    prometheus.Counter
	errors       *prometheus.CounterVec
	events       *prometheus.CounterVec
	ready        prometheus.Counter
	incomplete   prometheus.Counter
	modelInfo    *prometheus.GaugeVec
	reloads      *prometheus.CounterVec
	csvBuilds    prometheus.Counter
	redeliveries prometheus.Counter
}

func newMetrics() *metrics {
	const ns = "hpa_inference"
	m := &metrics{
		reg: prometheus.NewRegistry(),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "queue_depth",
			Help: "Samples waiting in a stage of this replica (stage: fetch, batch, write)."}, []string{"stage"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "batch_size",
			Help: "Samples per model batch.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}}),
		fetchSec: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "fetch_seconds",
			Help: "Time to get and decode the four channels of a sample.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		computeSec: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "compute_seconds",
			Help: "Model time per batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		writeSec: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "write_seconds",
			Help: "Time to write a label (check, put, event, ack).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		labeled: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "samples_labeled_total",
			Help: "Label JSON documents written."}),
		unchanged: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "samples_unchanged_total",
			Help: "Samples whose existing label already had the same model digest and sources (not rewritten)."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "errors_total",
			Help: "Failures by kind (pipeline error kinds, s3, nats, inference, event, key)."}, []string{"kind"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "s3_events_total",
			Help: "S3 object events by outcome (channel, duplicate, ignored, bad)."}, []string{"result"}),
		ready: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "samples_ready_total",
			Help: "Sample-ready messages published (all four channels present)."}),
		incomplete: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "samples_incomplete_total",
			Help: "Samples reported incomplete after the configured age."}),
		modelInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "model_info",
			Help: "1 for the serving model set."}, []string{"name", "version", "digest"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "model_reloads_total",
			Help: "Model loads by result (ok, failed)."}, []string{"result"}),
		csvBuilds: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "plate_csv_builds_total",
			Help: "Per-plate submission CSVs rebuilt."}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "naks_total",
			Help: "Messages handed back for redelivery after a transient failure."}),
	}
	m.reg.MustRegister(m.queueDepth, m.batchSize, m.fetchSec, m.computeSec, m.writeSec, m.labeled, m.unchanged,
		m.errors, m.events, m.ready, m.incomplete, m.modelInfo, m.reloads, m.csvBuilds, m.redeliveries,
		prometheus.NewGoCollector())
	return m
}
