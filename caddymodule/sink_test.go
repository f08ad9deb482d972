package caddymodule

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/b2scom/b2s-edge/beacon"
)

// sinkConfig is a site whose broker may be down. b2s_health comes after
// b2s_collect in the file: the directive order must put it first.
var sinkConfig = edgeConfig{
	global: "auto_https off",
	kafka:  "flush_timeout 200ms",
	sites: `http://localhost:__HTTP__ {
	b2s_collect
	b2s_health /healthz
	respond "page"
}
`,
}

// sinkEdge is Caddy in front of a broker address that nothing listens on
// until startBroker.
type sinkEdge struct {
	*edge
	broker string // 127.0.0.1:port
}

// startSinkEdge loads sinkConfig with spoolOptions added to the b2s app.
func startSinkEdge(t *testing.T, topic, spoolOptions string) *sinkEdge {
	t.Helper()
	broker := deadBroker(t)
	c := sinkConfig
	c.b2s = spoolOptions
	return &sinkEdge{edge: loadEdge(t, c, []string{broker}, topic), broker: broker}
}

// startBroker starts a Kafka-protocol broker on the address the edge was
// given, and a reader of the topic.
func (e *sinkEdge) startBroker(t *testing.T) *recordReader {
	t.Helper()
	_, port, err := net.SplitHostPort(e.broker)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return newRecordReader(t, startKafka(t, e.topic, kfake.Ports(p)), e.topic)
}

// health asks b2s_health.
func (e *sinkEdge) health(t *testing.T) (response, healthReport) {
	t.Helper()
	resp := doRequest(t, e.client, newRequest(t, http.MethodGet, e.base+"/healthz", nil))
	var rep healthReport
	dec := json.NewDecoder(strings.NewReader(string(resp.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("b2s_health answered %q, not its JSON report: %v", resp.body, err)
	}
	return resp, rep
}

// metric scrapes one series from the admin /metrics.
func (e *sinkEdge) metric(t *testing.T, series string) float64 {
	t.Helper()
	v, ok := scrapeMetrics(t, e.admin+"/metrics")[series]
	if !ok {
		t.Fatalf("%s is missing from the admin /metrics", series)
	}
	return v
}

// waitMetric waits until series satisfies ok, and returns its last value.
func (e *sinkEdge) waitMetric(t *testing.T, series string, wait time.Duration, ok func(float64) bool) (float64, bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		v := e.metric(t, series)
		if ok(v) {
			return v, true
		}
		if time.Now().After(deadline) {
			return v, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func doRequest(t *testing.T, client *http.Client, req *http.Request) response {
	t.Helper()
	return (&edge{client: client}).do(t, req)
}

// TestBrokerOutage: a beacon's record is in the spool before its response,
// so a broker that is down costs nothing but delay: beacons are answered,
// the sink and b2s_health report the outage, and when the broker comes up
// every record arrives.
func TestBrokerOutage(t *testing.T) {
	e := startSinkEdge(t, "b2s.outage", "")
	start := readCounters(t)
	const beacons = 20
	var probes []string

	t.Run("beacons are answered with the pixel while the broker is down, each spooled before its response", func(t *testing.T) {
		for i := range beacons {
			p := fmt.Sprintf("outage-%d-%d", i, time.Now().UnixNano())
			probes = append(probes, p)
			method := http.MethodGet
			if i%5 == 4 {
				method = http.MethodHead
			}
			before := stats.Accepted.Load()
			resp := doRequest(t, e.client, newRequest(t, method, e.base+"/b.gif?e=outage&probe="+p, nil))
			// No waiting: the spool counts a record once write(2)
			// returned, and the beacon answers after that.
			spooled := stats.Accepted.Load() - before
			if resp.status != http.StatusOK {
				t.Fatalf("beacon %d: status %d, want 200", i, resp.status)
			}
			checkPixel(t, method, resp)
			if spooled != 1 {
				t.Errorf("beacon %d: %d records spooled by the time its response arrived, want 1", i, spooled)
			}
		}
		if got := e.metric(t, "b2s_records_spooled_total") - float64(start.accepted); got != beacons {
			t.Errorf("b2s_records_spooled_total rose by %v, want %d", got, beacons)
		}
		if got := stats.Shipped.Load() - start.shipped; got != 0 {
			t.Errorf("%d records counted shipped while the broker is down", got)
		}
	})

	t.Run("the sink is degraded once a write to Kafka failed", func(t *testing.T) {
		if v, ok := e.waitMetric(t, "b2s_sink_degraded", 10*time.Second, func(v float64) bool { return v == 1 }); !ok {
			t.Fatalf("b2s_sink_degraded = %v with the broker down, want 1", v)
		}
		if got := e.metric(t, "b2s_kafka_write_errors_total"); got <= float64(start.writeErrors) {
			t.Errorf("b2s_kafka_write_errors_total = %v, want more than the %d before the outage", got, start.writeErrors)
		}
		if v, ok := e.waitMetric(t, "b2s_shipper_lag_seconds", 5*time.Second, func(v float64) bool { return v > 0 }); !ok {
			t.Errorf("b2s_shipper_lag_seconds = %v with records waiting, want more than 0", v)
		}
	})

	t.Run("b2s_health answers 503 naming kafka_failing, without a cookie or a record", func(t *testing.T) {
		before := readCounters(t)
		resp, rep := e.health(t)
		if resp.status != http.StatusServiceUnavailable || rep.Status != "degraded" {
			t.Errorf("b2s_health: %d %q, want 503 degraded", resp.status, rep.Status)
		}
		if !slices.Contains(rep.Reasons, "kafka_failing") {
			t.Errorf("reasons = %q, want kafka_failing among them", rep.Reasons)
		}
		checkHealthResponse(t, resp)
		// A page record is made after its response is sent. The next
		// request on the same connection is read only once the handler
		// chain returned: after this beacon's response, a record of the
		// health check would have been counted.
		p := fmt.Sprintf("after-health-%d", time.Now().UnixNano())
		probes = append(probes, p)
		if resp := doRequest(t, e.client, newRequest(t, http.MethodGet, e.base+"/b.gif?probe="+p, nil)); resp.status != http.StatusOK {
			t.Fatalf("beacon after the health check: status %d, want 200", resp.status)
		}
		checkDelta(t, before, wantDelta{beacon: 1, setReason: "new"})
	})

	var reader *recordReader
	t.Run("every record arrives once the broker is up", func(t *testing.T) {
		reader = e.startBroker(t)
		for _, p := range probes {
			c := reader.find(t, p)
			if c.rec.Kind != "beacon" {
				t.Errorf("record of %s: kind %q, want beacon", p, c.rec.Kind)
			}
		}
		want := float64(len(probes))
		if v, ok := e.waitMetric(t, "b2s_records_shipped_total", 10*time.Second, func(v float64) bool { return v-float64(start.shipped) >= want }); !ok {
			t.Errorf("b2s_records_shipped_total rose by %v, want %v", v-float64(start.shipped), want)
		}
		// Anything sent twice would be here by now.
		reader.poll(t, 300*time.Millisecond)
		if len(reader.got) != len(probes) {
			t.Errorf("%d records read from Kafka, want %d", len(reader.got), len(probes))
		}
	})

	t.Run("the sink recovers and b2s_health answers 200", func(t *testing.T) {
		if v, ok := e.waitMetric(t, "b2s_sink_degraded", 10*time.Second, func(v float64) bool { return v == 0 }); !ok {
			t.Errorf("b2s_sink_degraded = %v after Kafka took every record, want 0", v)
		}
		if v, ok := e.waitMetric(t, "b2s_shipper_lag_seconds", 5*time.Second, func(v float64) bool { return v == 0 }); !ok {
			t.Errorf("b2s_shipper_lag_seconds = %v after Kafka took every record, want 0", v)
		}
		resp, rep := e.health(t)
		if resp.status != http.StatusOK || rep.Status != "ok" || len(rep.Reasons) != 0 {
			t.Errorf("b2s_health: %d %q %q, want 200 ok and no reasons", resp.status, rep.Status, rep.Reasons)
		}
		checkHealthResponse(t, resp)
	})
}

// checkHealthResponse checks what every b2s_health answer has: JSON that
// no cache keeps, and no cookie, as b2s_health runs before b2s_collect.
func checkHealthResponse(t *testing.T, resp response) {
	t.Helper()
	if sc := resp.header.Values("Set-Cookie"); len(sc) != 0 {
		t.Errorf("b2s_health set a cookie: %q", sc)
	}
	if got := resp.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	if got := resp.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}

// TestFullSpool: a spool at spool_max_size drops new records, counts each
// drop, and still answers every beacon with its pixel.
func TestFullSpool(t *testing.T) {
	e := startSinkEdge(t, "b2s.full", "spool_max_size 1MiB")
	start := readCounters(t)
	// About 8 KiB of record per beacon: 1 MiB holds some 120 of them.
	const beacons = 200
	big := "u=https://shop.example/" + strings.Repeat("u", beacon.MaxURLLen) +
		"&r=https://search.example/" + strings.Repeat("r", beacon.MaxReferrerLen)
	for i := range 7 {
		big += fmt.Sprintf("&p%d=%s", i, strings.Repeat("v", beacon.MaxParamValLen))
	}

	t.Run("every beacon is answered with the pixel, spooled or dropped", func(t *testing.T) {
		for i := range beacons {
			resp := doRequest(t, e.client, newRequest(t, http.MethodGet, fmt.Sprintf("%s/b.gif?%s&probe=full-%d", e.base, big, i), nil))
			if resp.status != http.StatusOK {
				t.Fatalf("beacon %d: status %d, want 200", i, resp.status)
			}
			checkPixel(t, http.MethodGet, resp)
		}
	})

	var spooled uint64
	t.Run("b2s_records_dropped_total{reason=spool_full} counts the beacons that were not spooled", func(t *testing.T) {
		c := readCounters(t)
		spooled = c.accepted - start.accepted
		dropped := c.full - start.full
		t.Logf("%d beacons: %d spooled, %d dropped", beacons, spooled, dropped)
		if spooled == 0 || dropped == 0 {
			t.Errorf("%d spooled and %d dropped; want some of each in a spool of 1MiB", spooled, dropped)
		}
		if spooled+dropped != beacons {
			t.Errorf("%d spooled + %d dropped = %d, want the %d beacons sent", spooled, dropped, spooled+dropped, beacons)
		}
		if got := e.metric(t, `b2s_records_dropped_total{reason="spool_full"}`); got != float64(c.full) {
			t.Errorf(`b2s_records_dropped_total{reason="spool_full"} = %v, want %d`, got, c.full)
		}
		if got := e.metric(t, `b2s_records_dropped_total{reason="spool_error"}`); got != float64(start.spoolErr) {
			t.Errorf(`b2s_records_dropped_total{reason="spool_error"} = %v, want it unchanged at %d`, got, start.spoolErr)
		}
		if got := c.beacon - start.beacon; got != beacons {
			t.Errorf(`b2s_records_total{kind="beacon"} rose by %v, want %d: every beacon builds a record`, got, beacons)
		}
	})

	t.Run("the spool is at its maximum size and b2s_health says it is nearly full", func(t *testing.T) {
		size, max := e.metric(t, "b2s_spool_bytes"), e.metric(t, "b2s_spool_max_bytes")
		if max != 1<<20 {
			t.Errorf("b2s_spool_max_bytes = %v, want 1MiB", max)
		}
		if size > max || size < max*0.9 {
			t.Errorf("b2s_spool_bytes = %v, want between 90%% and 100%% of %v", size, max)
		}
		resp, rep := e.health(t)
		if resp.status != http.StatusServiceUnavailable || !slices.Contains(rep.Reasons, "spool_nearly_full") {
			t.Errorf("b2s_health: %d %q, want 503 with spool_nearly_full", resp.status, rep.Reasons)
		}
		if rep.SpoolBytes != int64(size) {
			t.Errorf("b2s_health spool_bytes = %d, want %v as on /metrics", rep.SpoolBytes, size)
		}
	})

	t.Run("once the broker is up the spooled records arrive and beacons are spooled again", func(t *testing.T) {
		reader := e.startBroker(t)
		reader.waitCount(t, int(spooled))
		if v, ok := e.waitMetric(t, "b2s_records_shipped_total", 10*time.Second, func(v float64) bool { return v-float64(start.shipped) >= float64(spooled) }); !ok {
			t.Fatalf("b2s_records_shipped_total rose by %v, want %d", v-float64(start.shipped), spooled)
		}
		before := readCounters(t)
		resp := doRequest(t, e.client, newRequest(t, http.MethodGet, e.base+"/b.gif?probe=after-full", nil))
		if resp.status != http.StatusOK {
			t.Fatalf("status %d, want 200", resp.status)
		}
		checkDelta(t, before, wantDelta{beacon: 1, setReason: "new"})
		if got := stats.DroppedFull.Load() - before.full; got != 0 {
			t.Errorf("%d records dropped after Kafka took the backlog, want 0", got)
		}
		reader.find(t, "after-full")
		reader.poll(t, 300*time.Millisecond)
		if want := int(spooled) + 1; len(reader.got) != want {
			t.Errorf("%d records read from Kafka, want the %d spooled", len(reader.got), want)
		}
	})
}

// TestHealthReasons: b2s_health names each way the sink is degraded.
func TestHealthReasons(t *testing.T) {
	a := provisionApp(t, &App{Secrets: []string{testKey1}, Spool: t.TempDir(), Kafka: &KafkaConfig{
		Brokers: []string{deadBroker(t)}, Topic: "b2s.health", FlushTimeout: caddy.Duration(100 * time.Millisecond),
	}})
	if err := a.sink.spool.Append("k", []byte("a record Kafka will not take")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !a.sink.ship.Failing() || a.sink.spool.Lag() < 50*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("with the broker down: failing %v, lag %v; want a failed write and a lag over 50ms", a.sink.ship.Failing(), a.sink.spool.Lag())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, tc := range []struct {
		name        string
		maxLag      time.Duration
		wantReasons []string
	}{
		{"a failed write within max_lag is reported as kafka_failing", time.Hour, []string{"kafka_failing"}},
		{"a record older than max_lag adds lag", 10 * time.Millisecond, []string{"kafka_failing", "lag"}},
		{"max_lag left out is 1m", 0, []string{"kafka_failing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Health{MaxLag: caddy.Duration(tc.maxLag)}
			h.setDefaults() // Provision's defaults; the app is provisioned above
			if err := h.Validate(); err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil), nil); err != nil {
				t.Fatal(err)
			}
			var rep healthReport
			if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
				t.Fatalf("report %q: %v", w.Body, err)
			}
			if w.Code != http.StatusServiceUnavailable || rep.Status != "degraded" || !slices.Equal(rep.Reasons, tc.wantReasons) {
				t.Errorf("b2s_health: %d %q %q, want 503 degraded %q", w.Code, rep.Status, rep.Reasons, tc.wantReasons)
			}
			if rep.LagSeconds <= 0 {
				t.Errorf("lag_seconds = %v, want the age of the waiting record", rep.LagSeconds)
			}
		})
	}
}
