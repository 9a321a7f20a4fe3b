package bridge

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the bridge's Prometheus metrics.
type Metrics struct {
	Registry   *prometheus.Registry
	received   prometheus.Counter
	published  prometheus.Counter
	duplicates prometheus.Counter
	deleted    prometheus.Counter
	poison     prometheus.Counter
	extensions prometheus.Counter
	retries    prometheus.Counter
	errors     *prometheus.CounterVec
	waits      *prometheus.CounterVec
	lag        prometheus.Gauge
}

// NewMetrics creates the metrics on a registry of their own.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	f := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "hpa_bridge_" + name, Help: help})
		r.MustRegister(c)
		return c
	}
	m := &Metrics{Registry: r,
		received:   f("messages_received_total", "SQS messages received."),
		published:  f("records_published_total", "S3 records acknowledged by JetStream."),
		duplicates: f("records_duplicate_total", "Published records JetStream already had (redeliveries)."),
		deleted:    f("messages_deleted_total", "SQS messages deleted after all their records were acknowledged."),
		poison:     f("messages_poison_total", "Unparsable SQS messages (dead-lettered, left for the queue's redrive)."),
		extensions: f("visibility_extensions_total", "Visibility extensions of slow batches."),
		retries:    f("messages_retried_total", "Messages not published, made visible again after the retry delay."),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hpa_bridge_errors_total",
			Help: "Failures by kind: sqs, publish."}, []string{"kind"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hpa_bridge_backoff_total",
			Help: "Receive loops paused, by cause (nats: NATS unreachable)."}, []string{"cause"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hpa_bridge_lag_seconds",
			Help: "Age of the last received SQS message when it was received."}),
	}
	r.MustRegister(m.errors, m.waits, m.lag)
	return m
}
