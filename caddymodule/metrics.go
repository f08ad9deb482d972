package caddymodule

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/b2scom/b2s-edge/logship"
)

// stats is shared by every shipper of the process, so counters never go
// backwards when a reload replaces a shipper.
var stats = new(logship.Stats)

// Collectors are built once and registered into each config's registry
// (Caddy makes a new one per load). Labels have bounded values only.
var (
	metricsOnce sync.Once
	collectors  []prometheus.Collector
	recordsPage prometheus.Counter
	recordsBcn  prometheus.Counter
	cookiesSet  *prometheus.CounterVec
)

func buildMetrics() {
	const ns = "b2s"
	records := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "records_total",
		Help: "Records built at the edge, by kind (page or beacon).",
	}, []string{"kind"})
	recordsPage = records.WithLabelValues("page")
	recordsBcn = records.WithLabelValues("beacon")
	cookiesSet = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "cookies_set_total",
		Help: "Cookies set, by the visitor's cookie state before: new, reset (a cookie that did not verify), refresh or resign.",
	}, []string{"reason"})
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, f)
	}
	dropped := func(reason string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "records_dropped_total",
			Help:        "Records lost before Kafka acknowledged them, by reason: queue_full (Kafka too slow or down for longer than the queue lasts) or shutdown (not delivered within flush_timeout).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, f)
	}
	collectors = []prometheus.Collector{
		records, cookiesSet,
		counter("records_queued_total", "Records taken into the shipping queue.",
			func() float64 { return float64(stats.Accepted.Load()) }),
		counter("records_shipped_total", "Records Kafka acknowledged.",
			func() float64 { return float64(stats.Shipped.Load()) }),
		dropped("queue_full", func() float64 { return float64(stats.DroppedFull.Load()) }),
		dropped("shutdown", func() float64 { return float64(stats.DroppedClosed.Load()) }),
		counter("kafka_write_errors_total", "Failed Kafka write attempts; each is retried.",
			func() float64 { return float64(stats.WriteErrors.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "records_queue_length",
			Help: "Records waiting in memory for Kafka.",
		}, func() float64 { return float64(stats.Queued.Load()) }),
	}
}

// registerMetrics registers the collectors into reg, once per registry.
func registerMetrics(reg *prometheus.Registry) {
	metricsOnce.Do(buildMetrics)
	if reg == nil {
		return
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err) // a programming error: conflicting descriptors
			}
		}
	}
}
