package caddymodule

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/logship"
)

// stats is shared by every spool and shipper of the process, so counters
// never go backwards when a reload replaces one.
var stats = new(logship.Stats)

// Every collector of the plugin, built once when the process starts and
// registered into each config's registry (Caddy makes a new one per load),
// so counters never go backwards on a reload. Labels have bounded values
// only (never a cookie ID, IP or URL), and every known label value exists
// from the start, so that rates and alerts see a series from the first
// scrape. The request path increments the children held here: no lookup
// by label value per request.
var (
	recordsTotal = counterVec("records_total",
		"Records built at the edge, by kind (page, beacon, or the mail links' open, click and unsubscribe).", "kind")
	recordsPage = recordsTotal.WithLabelValues("page")
	recordsBcn  = recordsTotal.WithLabelValues("beacon")

	// cookieSet is indexed by cookieReason.
	cookiesSet = counterVec("cookies_set_total",
		"Cookies set, by reason: new (no cookie), reset (a cookie that did not verify), refresh (an old valid cookie), resign (signed by an older key), link (joined to another network ID by a link token) or migrate (an unprefixed cookie from before cookie_prefix host, set under its __Host- name).", "reason")
	cookieSet = children(cookiesSet, "new", "reset", "refresh", "resign", "link", "migrate")

	// linkResults is indexed by linkResult.
	linkTokens = counterVec("link_tokens_total",
		"Link tokens, by result: issued, linked (exchanged for a cookie), expired, replayed, wrong_host, invalid, foreign_referrer (not a top-level navigation from a network page), bad_destination (a link endpoint request refused).", "result")
	linkResults = children(linkTokens, "issued", "linked", "expired", "replayed", "wrong_host", "invalid", "foreign_referrer", "bad_destination")

	// privacySignal is indexed by signal.
	privacySignals = counterVec("privacy_signals_total",
		"Privacy signals acted on: optout, optin, child (the site's child header), member (sign-in), signout.", "signal")
	privacySignal = children(privacySignals, "optout", "optin", "child", "member", "signout")

	// optInRefused is indexed by refusal.
	optInRefusals = counterVec("optin_refused_total",
		"Opt-in POSTs refused (403), by reason: not_own (not a form of the site's own origin that the visitor submitted, by Fetch Metadata, Origin or Referer) or token (without a valid token of the opt-in's own form: a POST redirected there, a form elsewhere, an expired form).", "reason")
	optInRefused = children(optInRefusals, "not_own", "token")

	// consentDecision is indexed by consentResult.
	consentDecisions = counterVec("consent_decisions_total",
		"Decisions at the consent endpoint, by result: granted (the visitor's own form, with its token: the cookie and the edge's consent cookie set), withdrawn (the cookies deleted, the opt-out cookie set) or refused (a grant that was not the visitor's own form or lacked its token, or came from a browser whose GPC or child mark outranks consent).", "result")
	consentDecision = children(consentDecisions, "granted", "withdrawn", "refused")

	// isolateCount is indexed by isolated.
	isolateRemoved = counterVec("isolate_removed_total",
		"What b2s_isolate kept from third parties: request_cookie (a cookie of the request not passed on), set_cookie (a Set-Cookie of the upstream not passed back) or header (an X-B2S-* header, either way).", "what")
	isolateCount = children(isolateRemoved, "request_cookie", "set_cookie", "header")

	// redactionCount is indexed by beacon.RedactField.
	redactionsTotal = counterVec("redactions_total",
		"Personal data replaced in records before they are spooled, by field (url, referrer, event, params, destination): each email address, and each value of a parameter named in redact_params.", "field")
	redactionCount = children(redactionsTotal, beacon.RedactFieldNames[:]...)

	// collectors is what registerMetrics registers: the families above,
	// and the spool's and shipper's counters and gauges, read at scrape
	// time.
	collectors = []prometheus.Collector{
		recordsTotal, cookiesSet, linkTokens, privacySignals, optInRefusals, consentDecisions, isolateRemoved, mailLinksTotal, fleetCollector{},
		redactionsTotal,
		counterFunc("records_spooled_total", "Records appended to the spool (accepted at the edge).", stats.Accepted.Load),
		counterFunc("records_shipped_total", "Records Kafka acknowledged.", stats.Shipped.Load),
		dropped("spool_full", stats.DroppedFull.Load),
		dropped("spool_error", stats.DroppedError.Load),
		dropped("client_limit", clientLimiter.Dropped),
		dropped("quarantine", stats.QuarantineDropped.Load),
		dropped("damaged", stats.DroppedDamaged.Load),
		counterFunc("records_quarantined_total", "Records Kafka refused for good (too large for the topic, invalid), set aside in the quarantine file beside the spool for inspection and replay; the records behind them shipped on.", stats.Quarantined.Load),
		counterFunc("kafka_writes_total", "Writes to Kafka acknowledged in full or in part (one per spool read, each one produce request per partition leader); records_shipped_total / kafka_writes_total is the records per write.", stats.Writes.Load),
		counterFunc("kafka_write_errors_total", "Failed Kafka write attempts; each is retried.", stats.WriteErrors.Load),
		counterFunc("spool_repairs_total", "Damage found in spool segments and repaired: a torn tail after a crash cut off, or damaged bytes in the middle skipped to the next intact record (the records lost are in b2s_records_dropped_total{reason=\"damaged\"}).", stats.SpoolRepairs.Load),
		counterFunc("spool_refused_total", "Files in the spool directory named as segments that are not regular files (a planted symlink, say): left untouched and unread.", stats.SpoolRefused.Load),
		gaugeFunc("spool_bytes", "Bytes in the spool on disk.", func() float64 { return float64(sinkBytes()) }),
		gaugeFunc("spool_max_bytes", "The spool's maximum size.", func() float64 { return float64(sinkMax()) }),
		gaugeFunc("shipper_lag_seconds", "Age of the oldest record not yet acknowledged by Kafka; 0 when the shipper has caught up.",
			func() float64 { return sinkLag().Seconds() }),
		gaugeFunc("sink_degraded", "1 while the last write to Kafka failed (records wait in the spool), else 0.",
			func() float64 {
				if sinkFailing() {
					return 1
				}
				return 0
			}),
	}
)

const metricsNamespace = "b2s"

// counterVec is a counter family with one label.
func counterVec(name, help, label string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, []string{label})
}

// children creates the series of each label value, at 0, and returns them
// in the order given: the request path indexes them by a constant.
func children(vec *prometheus.CounterVec, values ...string) []prometheus.Counter {
	cs := make([]prometheus.Counter, len(values))
	for i, v := range values {
		cs[i] = vec.WithLabelValues(v)
	}
	return cs
}

// Indexes of linkResults, in its order.
type linkResult uint8

const (
	linkIssued linkResult = iota
	linkLinked
	linkExpired
	linkReplayed
	linkWrongHost
	linkInvalid
	linkForeignReferrer
	linkBadDestination
)

// Indexes of privacySignal, in its order.
type signal uint8

const (
	signalOptOut signal = iota
	signalOptIn
	signalChild
	signalMember
	signalSignOut
)

// Indexes of optInRefused, in its order.
type refusal uint8

const (
	refusedNotOwn refusal = iota
	refusedToken
)

// Indexes of consentDecision, in its order.
type consentResult uint8

const (
	consentGranted consentResult = iota
	consentWithdrawn
	consentRefused
)

// Indexes of isolateCount, in its order.
type isolated uint8

const (
	isolatedRequestCookie isolated = iota
	isolatedSetCookie
	isolatedHeader
)

func counterFunc(name, help string, load func() uint64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help},
		func() float64 { return float64(load()) })
}

func gaugeFunc(name, help string, f func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: name, Help: help}, f)
}

// dropped is one reason's series of b2s_records_dropped_total, a counter
// the spool keeps.
func dropped(reason string, load func() uint64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "records_dropped_total",
		Help:        "Records lost at the edge, by reason: spool_full (the spool reached spool_max_size), spool_error (the spool could not be written), client_limit (one client over its client_limit), quarantine (a record Kafka refused for good that the quarantine file could not take) or damaged (a record in the spool whose bytes were damaged on disk; the records around it are kept).",
		ConstLabels: prometheus.Labels{"reason": reason},
	}, func() float64 { return float64(load()) })
}

// registerMetrics registers the collectors into reg (nil: none), once per
// registry.
func registerMetrics(reg *prometheus.Registry) {
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
