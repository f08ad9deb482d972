package caddymodule

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/b2scom/b2s-edge/logship"
)

// stats is shared by every spool and shipper of the process, so counters
// never go backwards when a reload replaces one.
var stats = new(logship.Stats)

// Collectors are built once and registered into each config's registry
// (Caddy makes a new one per load). Labels have bounded values only.
var (
	metricsOnce sync.Once
	collectors  []prometheus.Collector
	recordsPage prometheus.Counter
	recordsBcn  prometheus.Counter
	cookiesSet  *prometheus.CounterVec

	cookiesNew, cookiesReset, cookiesRefresh, cookiesResign prometheus.Counter
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
		Help: "Cookies set, by reason: new (no cookie), reset (a cookie that did not verify), refresh (an old valid cookie), resign (signed by an older key) or link (joined to another network ID by a link token).",
	}, []string{"reason"})
	cookiesNew = cookiesSet.WithLabelValues("new")
	cookiesReset = cookiesSet.WithLabelValues("reset")
	cookiesRefresh = cookiesSet.WithLabelValues("refresh")
	cookiesResign = cookiesSet.WithLabelValues("resign")
	counter := func(name, help string, v *uint64Loader) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, v.float)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, f)
	}
	dropped := func(reason string, v *uint64Loader) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "records_dropped_total",
			Help:        "Records lost at the edge, by reason: spool_full (the spool reached spool_max_size) or spool_error (the spool could not be written).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, v.float)
	}
	collectors = append(privacyCollectors(),
		records, cookiesSet,
		counter("records_spooled_total", "Records appended to the spool (accepted at the edge).", &uint64Loader{&stats.Accepted}),
		counter("records_shipped_total", "Records Kafka acknowledged.", &uint64Loader{&stats.Shipped}),
		dropped("spool_full", &uint64Loader{&stats.DroppedFull}),
		dropped("spool_error", &uint64Loader{&stats.DroppedError}),
		counter("kafka_writes_total", "Writes to Kafka acknowledged in full or in part (one per spool read, each one produce request per partition leader); records_shipped_total / kafka_writes_total is the records per write.", &uint64Loader{&stats.Writes}),
		counter("kafka_write_errors_total", "Failed Kafka write attempts; each is retried.", &uint64Loader{&stats.WriteErrors}),
		counter("spool_repairs_total", "Damaged spool segments truncated at their last intact record (a torn tail after a crash, or corruption).", &uint64Loader{&stats.SpoolRepairs}),
		gauge("spool_bytes", "Bytes in the spool on disk.", func() float64 { return float64(sinkBytes()) }),
		gauge("spool_max_bytes", "The spool's maximum size.", func() float64 { return float64(sinkMax()) }),
		gauge("shipper_lag_seconds", "Age of the oldest record not yet acknowledged by Kafka; 0 when the shipper has caught up.",
			func() float64 { return sinkLag().Seconds() }),
		gauge("sink_degraded", "1 while the last write to Kafka failed (records wait in the spool), else 0.",
			func() float64 {
				if sinkFailing() {
					return 1
				}
				return 0
			}),
	)
}

type uint64Loader struct{ v interface{ Load() uint64 } }

func (u *uint64Loader) float() float64 { return float64(u.v.Load()) }

// eachSink calls f for every open spool of the process.
func eachSink(f func(*sink)) {
	sinks.Range(func(_, v any) bool {
		f(v.(*sink))
		return true
	})
}

func sinkLag() (lag time.Duration) {
	eachSink(func(k *sink) { lag = max(lag, k.spool.Lag()) })
	return lag
}

func sinkBytes() (n int64) {
	eachSink(func(k *sink) { n += k.spool.Size() })
	return n
}

func sinkMax() (n int64) {
	eachSink(func(k *sink) { n += k.spool.MaxSize() })
	return n
}

func sinkFailing() (failing bool) {
	eachSink(func(k *sink) { failing = failing || k.ship.Failing() })
	return failing
}

// cookieCounter returns the cookies_set_total child for reason, looked up
// once per reason rather than hashed on every request.
func cookieCounter(reason string) prometheus.Counter {
	metricsOnce.Do(buildMetrics)
	switch reason {
	case "new":
		return cookiesNew
	case "reset":
		return cookiesReset
	case "refresh":
		return cookiesRefresh
	case "resign":
		return cookiesResign
	}
	return cookiesSet.WithLabelValues(reason)
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
