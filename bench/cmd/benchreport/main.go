// Command benchreport turns the raw outputs of bench/run.sh (bench/results/)
// into docs/benchmarks.md: the machine, the HTTP table with ratios, the
// records check, the Go benchmarks, shipping and memory, each target next
// to its figure. It exits 1 when a sanity check failed (a response other
// than 200, a record not spooled or not shipped, a run that did not
// complete), after writing the report. Targets not met are reported, not
// failures.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

func main() {
	results := flag.String("results", "bench/results", "`directory` of bench/run.sh's raw outputs")
	out := flag.String("out", "docs/benchmarks.md", "`file` to write")
	flag.Parse()
	r := &report{dir: *results}
	md := r.build()
	if err := os.WriteFile(*out, md, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "benchreport: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "benchreport: wrote %s\n", *out)
	for _, t := range r.targets {
		fmt.Fprintf(os.Stderr, "  %-4s %s: %s (target %s)\n", t.mark(), t.name, t.figure, t.want)
	}
	if len(r.failures) > 0 {
		fmt.Fprintf(os.Stderr, "benchreport: %d sanity check(s) failed:\n", len(r.failures))
		for _, f := range r.failures {
			fmt.Fprintf(os.Stderr, "  %s\n", f)
		}
		os.Exit(1)
	}
}

type report struct {
	dir      string
	failures []string
	targets  []target
}

type target struct {
	name, figure, want string
	met                *bool     // nil: not measured
	also               []verdict // further verdicts: CPU-normalised, paired median, with GeoIP
}

// verdict is a target judged once more, on another figure.
type verdict struct {
	label string
	met   *bool // nil: not measured
}

func (t target) mark() string {
	m := func(b *bool) string {
		switch {
		case b == nil:
			return "n/a"
		case *b:
			return "met"
		default:
			return "**not met**"
		}
	}
	s := m(t.met)
	for _, v := range t.also {
		s += "; " + v.label + ": " + m(v.met)
	}
	return s
}

func (r *report) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *report) target(name, figure, want string, measured, met bool) {
	t := target{name: name, figure: figure, want: want}
	if measured {
		t.met = &met
	}
	r.targets = append(r.targets, t)
}

// env reads a key=value file; a missing file is an empty map.
func (r *report) env(name string) map[string]string {
	m := map[string]string{}
	b, err := os.ReadFile(filepath.Join(r.dir, name))
	if err != nil {
		return m
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\n"), "=")
		if ok {
			m[k] = v
		}
	}
	return m
}

func num(m map[string]string, k string) float64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(m[k]), 64)
	if err != nil {
		return math.NaN()
	}
	return f
}

// wrk is the summary bench/wrk.lua prints.
type wrk struct {
	DurationUS    float64 `json:"duration_us"`
	Requests      float64 `json:"requests"`
	Bytes         float64 `json:"bytes"`
	ConnectErrors float64 `json:"connect_errors"`
	ReadErrors    float64 `json:"read_errors"`
	WriteErrors   float64 `json:"write_errors"`
	StatusErrors  float64 `json:"status_errors"`
	Timeouts      float64 `json:"timeouts"`
	LatMean       float64 `json:"lat_mean_us"`
	LatP50        float64 `json:"lat_p50_us"`
	LatP90        float64 `json:"lat_p90_us"`
	LatP99        float64 `json:"lat_p99_us"`
	LatMax        float64 `json:"lat_max_us"`
}

func (w wrk) rps() float64 { return w.Requests / (w.DurationUS / 1e6) }
func (w wrk) errors() float64 {
	return w.ConnectErrors + w.ReadErrors + w.WriteErrors + w.StatusErrors + w.Timeouts
}

func (r *report) wrk(name string) (wrk, bool) {
	b, err := os.ReadFile(filepath.Join(r.dir, name))
	if err != nil {
		return wrk{}, false
	}
	for line := range strings.Lines(string(b)) {
		if j, ok := strings.CutPrefix(line, "WRKJSON "); ok {
			var w wrk
			if json.Unmarshal([]byte(j), &w) == nil && w.DurationUS > 0 {
				return w, true
			}
		}
	}
	return wrk{}, false
}

// httpRun is one timed wrk run and what run.sh measured around it.
type httpRun struct {
	round int // 1, 2, ...: run.sh's round
	w     wrk
	env   map[string]string
}

func (x httpRun) rps() float64 { return x.w.rps() }
func (x httpRun) cpu() float64 { return x.cpuPerReq("server_ticks_run") }

func (x httpRun) cpuPerReq(key string) float64 {
	return num(x.env, key) * 1e6 / num(x.env, "clk_tck") / x.w.Requests
}

// serverShare is the percentage of one core the server's processes used
// during the run.
func (x httpRun) serverShare() float64 {
	return num(x.env, "server_ticks_run") / num(x.env, "clk_tck") / (x.w.DurationUS / 1e6) * 100
}

// cpuPct is a percentage of CPU i's time during the run, from one of the
// cpu_*_pct lists: busy (all), proc (processes), irq (interrupts), steal.
func (x httpRun) cpuPct(kind, i string) float64 {
	busy := strings.Split(x.env["cpu_"+kind+"_pct"], ",")
	n, err := strconv.Atoi(i)
	if err != nil || n >= len(busy) {
		return math.NaN()
	}
	v, _ := strconv.ParseFloat(busy[n], 64)
	return v
}

// httpCase is a case's rounds; the figures shown are those of its best
// round (most requests per second): a disturbance of the machine only ever
// slows a run down.
type httpCase struct {
	id, label string
	rounds    []httpRun
	httpRun   // the best round
	ok        bool
}

// paired is the median, over the rounds both cases ran, of f(x's round k) /
// f(y's round k), and how many rounds were paired. run.sh interleaves the
// cases in rounds, so round k of both ran close in time and mostly shared
// whatever else the machine was doing; a round missing from either case
// (a failed run, or fewer rounds) is left out.
func paired(x, y *httpCase, f func(httpRun) float64) (med float64, n int) {
	var v []float64
	for _, rx := range x.rounds {
		for _, ry := range y.rounds {
			if rx.round != ry.round {
				continue
			}
			if q := f(rx) / f(ry); !math.IsNaN(q) && !math.IsInf(q, 0) {
				v = append(v, q)
			}
		}
	}
	return medianOf(v), len(v)
}

var httpCases = []struct{ id, label string }{
	{"a_valid", "(a) `b2s_collect` beacon, valid cookie"},
	{"a_new", "(a) `b2s_collect` beacon, no cookie: one issued"},
	{"b_respond", "(b) `respond`, same headers, 43-byte body (the ceiling)"},
	{"b_file", "(b') `file_server`, the exact 43-byte GIF"},
	{"c_log", "(c) `respond` + JSON access `log` to a file"},
	{"d_valid", "(d) nginx `empty_gif` + `userid` + `access_log`, cookie sent"},
	{"d_new", "(d) nginx, no cookie: one set"},
	{"a_valid_nogeo", "(a) beacon without GeoIP, valid cookie"},
	{"a_new_nogeo", "(a) beacon without GeoIP, no cookie"},
	{"e_plain", "(e) page via `reverse_proxy`, without `b2s_collect`"},
	{"e_b2s_valid", "(e) page via `reverse_proxy` with `b2s_collect`, valid cookie"},
	{"e_b2s_new", "(e) page via `reverse_proxy` with `b2s_collect`, no cookie"},
	{"s_respond", "(s) control: `respond` as (b), in a Caddy with `bench_spin`"},
	{"s_spin", "(s) control: `bench_spin {spin}` (pure CPU) then `respond`"},
	{"s_page", "(s) control: the page via `reverse_proxy` as (e), in a Caddy with `bench_spin`"},
	{"s_page_spin", "(s) control: `bench_spin {spin_page}` then the page via `reverse_proxy`"},
}

func (r *report) build() []byte {
	var b bytes.Buffer
	m := r.env("machine.env")
	for f := range strings.Lines(readString(filepath.Join(r.dir, "failures.txt"))) {
		if f = strings.TrimSpace(f); f != "" {
			r.fail("%s", f)
		}
	}

	// Gather first, so the targets table can go at the top.
	cases := map[string]*httpCase{}
	for _, hc := range httpCases {
		c := &httpCase{id: hc.id, label: strings.NewReplacer("{spin}", r.env("machine.env")["spin"], "{spin_page}", r.env("machine.env")["spin_page"]).Replace(hc.label)}
		for round := 1; ; round++ {
			base := fmt.Sprintf("http/%s.r%d", hc.id, round)
			env := r.env(base + ".env")
			if len(env) == 0 {
				break
			}
			w, ok := r.wrk(base + ".txt")
			if !ok {
				r.fail("http %s round %d: no wrk result", hc.id, round)
				continue
			}
			if w.errors() > 0 {
				r.fail("http %s round %d: %.0f responses were not 200 or failed (status %.0f, connect %.0f, read %.0f, write %.0f, timeout %.0f)",
					hc.id, round, w.errors(), w.StatusErrors, w.ConnectErrors, w.ReadErrors, w.WriteErrors, w.Timeouts)
			}
			if ww, ok := r.wrk(base + ".warmup.txt"); ok && ww.errors() > 0 {
				r.fail("http %s round %d warm-up: %.0f responses were not 200 or failed", hc.id, round, ww.errors())
			}
			x := httpRun{round: round, w: w, env: env}
			c.rounds = append(c.rounds, x)
			if !c.ok || w.rps() > c.w.rps() {
				c.httpRun, c.ok = x, true
			}
		}
		if !c.ok {
			r.fail("http %s: no result", hc.id)
		}
		cases[hc.id] = c
	}
	gb := r.goBench()
	ship := r.shipBench()
	live := r.liveBench()
	mem := r.env("memory.env")

	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Generated by `make bench` (bench/run.sh, bench/cmd/benchreport) on %s; do not edit by hand, run it\n", m["date"])
	fmt.Fprintf(&b, "again. One run, on one machine: identical runs here differ by 30-40%%, so compare figures within this\n")
	fmt.Fprintf(&b, "file, not with another run's. The raw outputs (wrk reports, Go benchmark output, shipbench JSON, CPU\n")
	fmt.Fprintf(&b, "profiles, logs) are in `bench/results/` on the machine that ran it (not committed).\n\n")

	r.howToRun(&b, m)
	r.machine(&b, m)

	// Targets.
	r.httpTargets(cases)
	r.goTargets(gb)
	r.shipTargets(ship, cases)
	r.memTargets(mem)
	fmt.Fprintf(&b, "## Targets\n\n| target | figure | wanted | |\n|---|---|---|---|\n")
	for _, t := range r.targets {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.name, t.figure, t.want, t.mark())
	}
	fmt.Fprintf(&b, "\nThroughput targets are judged on req/s as stated (each case's best round), and CPU-normalised,\n")
	fmt.Fprintf(&b, "on what each server would serve with its core to itself (the inverse ratio of server CPU per request).\n")
	fmt.Fprintf(&b, "Other processes on this machine took part of the server's core in some runs (see the HTTP table); the\n")
	fmt.Fprintf(&b, "CPU-normalised ratio is much less disturbed by that, though it leaves out the kernel's network work.\n")
	fmt.Fprintf(&b, "The paired median is the median, over the rounds both cases ran, of round k of one case over round k of\n")
	fmt.Fprintf(&b, "the other: the rounds are interleaved, so the two runs of a pair ran close in time and mostly shared\n")
	fmt.Fprintf(&b, "whatever else the machine did. A disturbance of one round moves it less than it moves the ratio of two\n")
	fmt.Fprintf(&b, "best rounds, and the req/s target is judged on it a third time (its CPU-normalised value is shown beside).\n")
	if len(r.failures) > 0 {
		fmt.Fprintf(&b, "\n**Sanity checks failed** (the figures below are not to be trusted where these apply):\n\n")
		for _, f := range r.failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	} else {
		fmt.Fprintf(&b, "\nSanity checks: every response was a 200, every b2s request was spooled and shipped, and the broker\n")
		fmt.Fprintf(&b, "holds at least as many records as were spooled (counted with franz-go, not the product).\n")
	}
	b.WriteString("\n")

	r.httpSection(&b, m, cases)
	r.latSection(&b, m, r.latRuns())
	r.goSection(&b, gb)
	r.shipSection(&b, m, ship, cases)
	r.liveSection(&b, m, live)
	r.memSection(&b, m, mem)
	r.appendSection(&b, m)
	r.profileSection(&b, cases)
	return b.Bytes()
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func (r *report) howToRun(b *bytes.Buffer, m map[string]string) {
	fmt.Fprintf(b, "## How to run\n\n```sh\nmake bench                        # about 13 minutes\nmake bench BENCH_HTTP_ROUNDS=2 BENCH_OUTAGE=10s BENCH_RECORDS=100000   # quicker\n```\n\n")
	fmt.Fprintf(b, "It builds `bin/caddy` (`make build`), installs `wrk` and `nginx` with apt-get when they are missing\n")
	fmt.Fprintf(b, "(as root), and runs everything on 127.0.0.1, back to back:\n\n")
	fmt.Fprintf(b, "1. **HTTP**: the server pinned to CPU %s (`taskset`; `GOMAXPROCS=1` for Caddy, `worker_processes 1`\n", m["server_cpu"])
	fmt.Fprintf(b, "   for nginx), `wrk -t1 -c%s --latency` pinned to CPU %s, keep-alive, a %s warm-up then %s timed, each case\n", m["connections"], m["load_cpu"], m["warmup"], m["duration"])
	fmt.Fprintf(b, "   %s times in rounds (best shown, and the median of the paired rounds' ratios), with the\n", m["http_rounds"])
	fmt.Fprintf(b, "   broker (`bin/kbroker`, %s partitions) and the proxied page's upstream (nginx, static) on CPU %s too.\n", m["partitions"], m["load_cpu"])
	fmt.Fprintf(b, "   Server CPU is utime+stime of the server's processes from `/proc/<pid>/stat` around the timed run,\n")
	fmt.Fprintf(b, "   per completed request; for b2s cases also until the shipper has caught up (Kafka acknowledged every\n")
	fmt.Fprintf(b, "   record), which adds shipping's share. Each case is checked to answer 200 with the right body first.\n")
	fmt.Fprintf(b, "2. **Go benchmarks**: `go test -run '^$' -bench . -benchmem -benchtime %s ./beacon/ ./logship/ ./caddymodule/ ./geo/`.\n", m["gotime"])
	fmt.Fprintf(b, "3. **Shipping** (`bench/cmd/shipbench`, pinned to CPU %s with `GOMAXPROCS=1`; a fresh `bin/kbroker` on CPU\n", m["server_cpu"])
	fmt.Fprintf(b, "   %s for each run): %s records, best of %s rounds. Then the shipper under steady traffic (`-path live`):\n", m["load_cpu"], m["records"], m["ship_rounds"])
	fmt.Fprintf(b, "   %s records/s appended for %s while it ships them, writing at once, with a 5ms linger and with the\n", m["live_rate"], m["live_duration"])
	fmt.Fprintf(b, "   default 20ms, alternating in %s rounds (median shown).\n", m["ship_rounds"])
	fmt.Fprintf(b, "4. **Memory**: VmRSS of a fresh `bin/caddy` idle, during %s of beacons with the broker stopped, and after\n", m["outage"])
	fmt.Fprintf(b, "   the broker is back and the spool drained.\n")
	fmt.Fprintf(b, "5. **Spool append latency** (`bench/cmd/appendlat`): the distribution of `Spool.Append` times.\n\n")
	fmt.Fprintf(b, "Variables (make or environment): `BENCH_DURATION` (5s), `BENCH_WARMUP` (2s), `BENCH_CONNECTIONS` (64), `BENCH_HTTP_ROUNDS` (4),\n")
	fmt.Fprintf(b, "`BENCH_OUTAGE` (20s), `BENCH_RECORDS` (300000), `BENCH_SHIP_ROUNDS` (2), `BENCH_LIVE_RATE` (records/s under steady\n")
	fmt.Fprintf(b, "traffic; 25000), `BENCH_LIVE_DURATION` (5s), `BENCH_LAT_RATE` (req/s of the equal-load latency runs; 10000), `BENCH_GOTIME` (1s),\n")
	fmt.Fprintf(b, "`BENCH_PARTITIONS` (6), `BENCH_PROFILE` (seconds of CPU profile per profiled case, 0 for none; 5), `BENCH_SPIN` and `BENCH_SPIN_PAGE` (the controls' CPU burn per request; 3us, 4us), `BENCH_APPENDS` (1000000),\n")
	fmt.Fprintf(b, "`BENCH_PORT_BASE` (18400: ten ports from there), `BENCH_SERVER_CPU` (0), `BENCH_LOAD_CPU` (1).\n\n")
}

func (r *report) machine(b *bytes.Buffer, m map[string]string) {
	fmt.Fprintf(b, "## Machine\n\n| | |\n|---|---|\n")
	for _, kv := range [][2]string{
		{"date", m["date"]}, {"CPUs (`nproc`)", m["nproc"]}, {"CPU model", m["cpu_model"]}, {"memory", m["mem_total"]},
		{"kernel", m["kernel"]}, {"OS", m["os"]}, {"Go", m["go_version"]}, {"Caddy", m["caddy_version"]},
		{"nginx", m["nginx_version"]}, {"wrk", m["wrk_version"]}, {"b2s-edge", m["commit"]},
		{"load average at start", m["loadavg_start"] + " (other work on the machine adds noise)"},
		{"time taken", fmt.Sprintf("HTTP %ss, memory %ss, shipping %ss, Go benchmarks %ss",
			m["http_seconds"], m["memory_seconds"], m["ship_seconds"], m["gobench_seconds"])},
	} {
		fmt.Fprintf(b, "| %s | %s |\n", kv[0], kv[1])
	}
	b.WriteString("\n")
}

func ratio(a, b float64) float64 { return a / b }

func f2(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// thousands formats v rounded, with thin-space-free comma grouping.
func thousands(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func us(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " µs"
}

func fmtF(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func (r *report) httpTargets(c map[string]*httpCase) {
	a, an, bb, cc, e0, e1 := c["a_valid"], c["a_new"], c["b_respond"], c["c_log"], c["e_plain"], c["e_b2s_valid"]
	// A throughput target is judged on req/s, as stated, and again on
	// CPU per request (what each would serve with a core to itself), which
	// other work on the machine disturbs far less; the figure says how
	// much of its core each server got. Both are the best rounds'; beside
	// each is the median of the paired rounds' ratios (see paired), and
	// the one on req/s is judged a third time.
	thr := func(name, short string, x, y *httpCase, want float64) {
		ok := x.ok && y.ok
		v := ratio(x.rps(), y.rps())
		n := ratio(y.cpu(), x.cpu())
		pv, np := paired(x, y, httpRun.rps)
		pn, _ := paired(y, x, httpRun.cpu)
		of := fmt.Sprintf("median of %d paired rounds %s", np, f2(pv))
		switch np {
		case 0:
			of = "no paired rounds"
		case 1:
			of = "1 paired round " + f2(pv)
		}
		fig := fmt.Sprintf("%s = %s (%s); CPU-normalised %s (paired median %s); servers had %s%% and %s%% of their core",
			short, f2(v), of, f2(n), f2(pn), fmtF(x.serverShare(), 0), fmtF(y.serverShare(), 0))
		t := target{name: name, figure: fig, want: "≥ " + f2(want)}
		var mn, mp *bool
		if ok {
			m1, m2 := v >= want, n >= want
			t.met, mn = &m1, &m2
			if np > 0 {
				m3 := pv >= want
				mp = &m3
			}
		}
		t.also = []verdict{{"CPU-normalised", mn}, {"paired median", mp}}
		r.targets = append(r.targets, t)
	}
	// The controls say what a handler doing nothing but computing for
	// about as long as b2s_collect's Go benchmarks gets here: the
	// yardstick a figure is read against, not a target.
	control := func(i int, x, y *httpCase, what string) {
		if x == nil || y == nil || !x.ok || !y.ok {
			return
		}
		pv, _ := paired(x, y, httpRun.rps)
		r.targets[i].figure += fmt.Sprintf("; control, %s of pure CPU in front: %s (paired median %s)", what, f2(ratio(x.rps(), y.rps())), f2(pv))
	}
	m := r.env("machine.env")
	thr("beacon, valid cookie, vs the ceiling (b)", "a/b", a, bb, 0.90)
	control(len(r.targets)-1, c["s_spin"], c["s_respond"], m["spin"])
	v := ratio(a.w.LatP99, bb.w.LatP99)
	r.target("beacon, valid cookie: p99 vs (b)", fmt.Sprintf("%s vs %s = %sx at saturation (wrk)", us(a.w.LatP99), us(bb.w.LatP99), f2(v)), "≤ 1.2x", a.ok && bb.ok, v <= 1.2)
	if fig, vd := r.latVerdict(r.latRuns(), r.env("machine.env")["lat_rate"]); fig != "" {
		t := &r.targets[len(r.targets)-1]
		t.figure += fig
		t.also = append(t.also, vd)
	}
	thr("beacon, new cookie, vs the ceiling (b)", "a/b", an, bb, 0.85)
	control(len(r.targets)-1, c["s_spin"], c["s_respond"], m["spin"])
	thr("beacon vs `respond` + access log (c)", "a/c", a, cc, 1.4)
	thr("proxied page with `b2s_collect` vs without", "e", e1, e0, 0.90)
	control(len(r.targets)-1, c["s_page_spin"], c["s_page"], m["spin_page"])
}

func (r *report) httpSection(b *bytes.Buffer, m map[string]string, c map[string]*httpCase) {
	fmt.Fprintf(b, "## HTTP on one core\n\n")
	fmt.Fprintf(b, "`wrk -t1 -c%s -d%s --latency`, keep-alive, after a %s warm-up; every case ran %s times, in rounds, and the\n", m["connections"], m["duration"], m["warmup"], m["http_rounds"])
	fmt.Fprintf(b, "figures are those of its best round (other work on the machine only ever slows a run). The beacon request carries a page URL, a\n")
	fmt.Fprintf(b, "referrer, an event and two parameters, a Chrome User-Agent and Referer, and (where a cookie is sent) two other\n")
	fmt.Fprintf(b, "cookies before `b2sid`; the page request is `%s` for a 3.3 KB page. Every case gets the same headers.\n\n", "/products/cnc-spindle?ref=home")
	fmt.Fprintf(b, "| case | req/s | p50 | p99 | server CPU µs/req | incl. shipping | server core %%: server / others / irq | load core busy %% | req/s of each round |\n")
	fmt.Fprintf(b, "|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, hc := range httpCases {
		x := c[hc.id]
		if !x.ok {
			fmt.Fprintf(b, "| %s | failed | | | | | | | |\n", x.label)
			continue
		}
		withDrain := "–"
		if x.env["b2s"] == "1" {
			withDrain = fmtF(x.cpuPerReq("server_ticks_with_drain"), 1)
		}
		var rounds []string
		for _, y := range x.rounds {
			rounds = append(rounds, thousands(y.w.rps()))
		}
		share := x.serverShare()
		others := max(0, x.cpuPct("proc", m["server_cpu"])-share)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s / %s / %s | %s | %s |\n", x.label, thousands(x.w.rps()), us(x.w.LatP50), us(x.w.LatP99),
			fmtF(x.cpuPerReq("server_ticks_run"), 1), withDrain, fmtF(share, 0), fmtF(others, 0), fmtF(x.cpuPct("irq", m["server_cpu"]), 0),
			fmtF(x.cpuPct("busy", m["load_cpu"]), 0), strings.Join(rounds, " / "))
	}
	rt := func(x, y string) string {
		if !c[x].ok || !c[y].ok {
			return "–"
		}
		pv, _ := paired(c[x], c[y], httpRun.rps)
		pc, _ := paired(c[x], c[y], httpRun.cpu)
		return fmt.Sprintf("%s req/s (%s), %s CPU (%s)", f2(ratio(c[x].rps(), c[y].rps())), f2(pv),
			f2(ratio(c[x].cpu(), c[y].cpu())), f2(pc))
	}
	fmt.Fprintf(b, "\nRatios (req/s; server CPU per request during the run): the best rounds', and in brackets the median of\n")
	fmt.Fprintf(b, "the paired rounds' (round k of one case over round k of the other, which ran close to it in time):\n\n")
	fmt.Fprintf(b, "| ratio | valid cookie | new cookie | wanted |\n|---|---|---|---|\n")
	fmt.Fprintf(b, "| a/b, beacon vs the ceiling | %s | %s | ≥ 0.90 (valid), ≥ 0.85 (new) |\n", rt("a_valid", "b_respond"), rt("a_new", "b_respond"))
	fmt.Fprintf(b, "| a/b, beacon without GeoIP vs the ceiling | %s | %s | |\n", rt("a_valid_nogeo", "b_respond"), rt("a_new_nogeo", "b_respond"))
	fmt.Fprintf(b, "| a/b', beacon vs `file_server` | %s | %s | |\n", rt("a_valid", "b_file"), rt("a_new", "b_file"))
	fmt.Fprintf(b, "| a/c, beacon vs `respond` + access log | %s | %s | ≥ 1.4 |\n", rt("a_valid", "c_log"), rt("a_new", "c_log"))
	fmt.Fprintf(b, "| a/d, beacon vs nginx | %s | %s | |\n", rt("a_valid", "d_valid"), rt("a_new", "d_new"))
	fmt.Fprintf(b, "| e, proxied page with/without `b2s_collect` | %s | %s | ≥ 0.90 |\n", rt("e_b2s_valid", "e_plain"), rt("e_b2s_new", "e_plain"))
	fmt.Fprintf(b, "| control: `respond` after %s of pure CPU vs `respond` | %s | | yardstick for a/b |\n", m["spin"], rt("s_spin", "s_respond"))
	fmt.Fprintf(b, "| control: the page after %s of pure CPU vs the page | %s | | yardstick for e |\n\n", m["spin_page"], rt("s_page_spin", "s_page"))

	fmt.Fprintf(b, "How to read it:\n\n")
	fmt.Fprintf(b, "- **Server CPU µs/req** is the server processes' own CPU time per request. It is the steadier figure:\n")
	fmt.Fprintf(b, "  when something else on the machine takes the server's core, req/s drops but CPU per request barely\n")
	fmt.Fprintf(b, "  moves. 1,000,000 / (µs/req) is what one core would serve with nothing else on it.\n")
	fmt.Fprintf(b, "- **Server core %%: server / others / irq** is how the pinned core's time went during the run: the\n")
	fmt.Fprintf(b, "  server's processes, other processes on the machine (not pinned, not ours), and interrupts (mostly\n")
	fmt.Fprintf(b, "  the kernel's loopback TCP work for the server's own traffic, which is not in the server's CPU\n")
	fmt.Fprintf(b, "  time). A server well under 100%% while others ran was starved, and its req/s is low by as much.\n")
	fmt.Fprintf(b, "  **Load core busy** near 100%% means wrk (with the broker or upstream beside it, and whatever else\n")
	fmt.Fprintf(b, "  ran there) may have been the limit, as it can be for nginx.\n")
	fmt.Fprintf(b, "- **incl. shipping** counts the server's CPU until Kafka acknowledged the run's records. The shipper\n")
	fmt.Fprintf(b, "  runs on the same core during the run, so it is mostly in the first figure already.\n")
	fmt.Fprintf(b, "- Latencies are wrk's (closed loop, %s requests in flight): they follow throughput.\n", m["connections"])
	fmt.Fprintf(b, "- **The controls (s)** put a handler that does nothing but burn CPU (`bench/cmd/spincaddy`) in front of\n")
	fmt.Fprintf(b, "  the same `respond` (%s a request) and the same proxied page (%s), about what `b2s_collect`'s whole work\n", m["spin"], m["spin_page"])
	fmt.Fprintf(b, "  takes in its Go benchmarks (beacon, page). Their ratios are what that much work costs in place on\n")
	fmt.Fprintf(b, "  this machine, where a busier request path also meets colder caches and a load generator that\n")
	fmt.Fprintf(b, "  sleeps (and must be woken) more often: the yardsticks for a/b and e.\n\n")

	// Records.
	fmt.Fprintf(b, "### Every request recorded\n\n| case | requests (wrk) | records spooled | records shipped | dropped | logged lines |\n|---|---:|---:|---:|---:|---:|\n")
	for _, hc := range httpCases {
		for i, x := range c[hc.id].rounds {
			name := fmt.Sprintf("%s, round %d", hc.id, i+1)
			switch {
			case x.env["b2s"] == "1":
				sp, sh, dr := num(x.env, "spooled"), num(x.env, "shipped"), num(x.env, "dropped")
				fmt.Fprintf(b, "| %s | %s | %s | %s | %s | |\n", name, thousands(x.w.Requests), thousands(sp), thousands(sh), thousands(dr))
				// wrk counts completed requests; up to one per connection
				// may be in flight when it stops, served and recorded
				// after.
				conns := num(m, "connections")
				if sp < x.w.Requests || sp > x.w.Requests+conns {
					r.fail("http %s: %.0f records spooled for %.0f requests", name, sp, x.w.Requests)
				}
				if sh < sp {
					r.fail("http %s: %.0f of %.0f records shipped", name, sh, sp)
				}
				if dr != 0 {
					r.fail("http %s: %.0f records dropped", name, dr)
				}
			case x.env["log_lines"] != "":
				ll := num(x.env, "log_lines")
				fmt.Fprintf(b, "| %s | %s | | | | %s |\n", name, thousands(x.w.Requests), thousands(ll))
				if ll < x.w.Requests {
					r.fail("http %s: %.0f log lines for %.0f requests", name, ll, x.w.Requests)
				}
			}
		}
	}
	t := r.env("http/totals.env")
	fmt.Fprintf(b, "\nWhole HTTP section (checks, warm-ups and profiles included), from Caddy's admin `/metrics`: `b2s_records_spooled_total`\n")
	fmt.Fprintf(b, "%s, `b2s_records_shipped_total` %s, dropped %s, Kafka write errors %s, summed over the Caddy processes; the\n",
		thousands(num(t, "spooled_total")), thousands(num(t, "shipped_total")), t["dropped"], t["write_errors"])
	fmt.Fprintf(b, "broker's topic holds %s records.\n\n", thousands(num(t, "broker_records")))
	if len(t) == 0 {
		r.fail("http: no totals")
	} else {
		if num(t, "shipped_total") < num(t, "spooled_total") {
			r.fail("http totals: %s shipped of %s spooled", t["shipped_total"], t["spooled_total"])
		}
		if num(t, "broker_records") < num(t, "spooled_total") {
			r.fail("http totals: the broker holds %s records, %s were spooled", t["broker_records"], t["spooled_total"])
		}
		if num(t, "dropped") != 0 {
			r.fail("http totals: records dropped")
		}
	}
}

// goBench is one line of go test -bench output.
type goBench struct {
	pkg, name string
	iters     float64
	metrics   map[string]float64
	order     []string
}

func (r *report) goBench() []goBench {
	f, err := os.Open(filepath.Join(r.dir, "gobench.txt"))
	if err != nil {
		r.fail("go benchmarks: no output")
		return nil
	}
	defer f.Close()
	var out []goBench
	var pkg string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/b2scom/b2s-edge/")
			continue
		}
		if strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "FAIL") {
			r.fail("go benchmarks: %s", line)
		}
		fs := strings.Fields(line)
		if len(fs) < 4 || !strings.HasPrefix(fs[0], "Benchmark") {
			continue
		}
		it, err := strconv.ParseFloat(fs[1], 64)
		if err != nil {
			continue
		}
		g := goBench{pkg: pkg, name: fs[0], iters: it, metrics: map[string]float64{}}
		// Drop the -GOMAXPROCS suffix.
		if i := strings.LastIndex(g.name, "-"); i > 0 {
			if _, err := strconv.Atoi(g.name[i+1:]); err == nil {
				g.name = g.name[:i]
			}
		}
		for i := 2; i+1 < len(fs); i += 2 {
			v, err := strconv.ParseFloat(fs[i], 64)
			if err != nil {
				break
			}
			g.metrics[fs[i+1]] = v
			g.order = append(g.order, fs[i+1])
		}
		out = append(out, g)
	}
	if len(out) == 0 {
		r.fail("go benchmarks: no results")
	}
	return out
}

func findBench(gb []goBench, name string) (goBench, bool) {
	for _, g := range gb {
		if g.name == name {
			return g, true
		}
	}
	return goBench{}, false
}

func (r *report) goTargets(gb []goBench) {
	lk, okL := findBench(gb, "BenchmarkLookup/kind=city")
	for _, n := range []string{"BenchmarkBeaconHandler/cookie=valid", "BenchmarkBeaconHandler/cookie=none"} {
		g, ok := findBench(gb, n)
		ns, allocs := g.metrics["ns/op"], g.metrics["allocs/op"]
		t := target{name: "plugin work per beacon, " + strings.TrimPrefix(n, "BenchmarkBeaconHandler/"),
			figure: fmt.Sprintf("%s µs, %.0f allocs", fmtF(ns/1000, 2), allocs), want: "< 5 µs, ≤ 4 allocs"}
		if ok {
			met := ns < 5000 && allocs <= 4
			t.met = &met
		}
		// The handler benchmark has no GeoIP database; a deployment has.
		if ok && okL {
			gns, galloc := ns+lk.metrics["ns/op"], allocs+lk.metrics["allocs/op"]
			t.figure += fmt.Sprintf("; with the GeoIP lookup %s µs, %.0f allocs", fmtF(gns/1000, 2), galloc)
			met := gns < 5000 && galloc <= 4
			t.also = []verdict{{"with GeoIP", &met}}
		}
		r.targets = append(r.targets, t)
	}
}

func (r *report) goSection(b *bytes.Buffer, gb []goBench) {
	fmt.Fprintf(b, "## The plugin's own work (Go benchmarks)\n\n")
	fmt.Fprintf(b, "Not pinned, GOMAXPROCS = all CPUs. `BenchmarkBeaconHandler` is the whole beacon path of `b2s_collect`\n")
	fmt.Fprintf(b, "without Caddy around it: cookie verify or issue, record build, JSON encoding, spool append, pixel;\n")
	fmt.Fprintf(b, "the target (< 5 µs, ≤ 4 allocs) applies to it. Its app has no GeoIP database: `geo` `Lookup` is that\n")
	fmt.Fprintf(b, "part, added below.\n\n")
	fmt.Fprintf(b, "| package | benchmark | ns/op | B/op | allocs/op | other |\n|---|---|---:|---:|---:|---|\n")
	for _, g := range gb {
		var other []string
		for _, k := range g.order {
			switch k {
			case "ns/op", "B/op", "allocs/op":
			default:
				other = append(other, fmt.Sprintf("%s %s", thousands(g.metrics[k]), k))
			}
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", g.pkg, strings.TrimPrefix(g.name, "Benchmark"),
			thousands(g.metrics["ns/op"]), thousands(g.metrics["B/op"]), thousands(g.metrics["allocs/op"]), strings.Join(other, ", "))
	}
	lk, okL := findBench(gb, "BenchmarkLookup/kind=city")
	for _, n := range []string{"BenchmarkBeaconHandler/cookie=valid", "BenchmarkBeaconHandler/cookie=none"} {
		if h, ok := findBench(gb, n); ok && okL {
			fmt.Fprintf(b, "\n%s with the GeoIP lookup added: %s µs, %.0f allocs, %s B.", strings.TrimPrefix(n, "Benchmark"),
				fmtF((h.metrics["ns/op"]+lk.metrics["ns/op"])/1000, 2), h.metrics["allocs/op"]+lk.metrics["allocs/op"],
				thousands(h.metrics["B/op"]+lk.metrics["B/op"]))
		}
	}
	if okL {
		b.WriteString("\n")
	}
	ts, ok1 := findBench(gb, "BenchmarkShipThroughSpool")
	tm, ok2 := findBench(gb, "BenchmarkShipFromMemory")
	if ok1 && ok2 {
		fmt.Fprintf(b, "\nIn-process broker (kfake in the test process): through the spool / from memory = %s.\n",
			f2(ts.metrics["records/s"]/tm.metrics["records/s"]))
	}
	b.WriteString("\n")
}

// shipRun is one line of shipbench output.
type shipRun struct {
	Path          string    `json:"path"`
	Compression   string    `json:"compression"`
	Records       int       `json:"records"`
	RecordBytes   float64   `json:"record_bytes_avg"`
	Seconds       float64   `json:"seconds"`
	RecordsPerSec float64   `json:"records_per_s"`
	CPUMicros     float64   `json:"cpu_us_per_record"`
	WirePerRec    float64   `json:"wire_bytes_per_record"`
	BrokerRecords int64     `json:"broker_records"`
	FillPerSec    float64   `json:"spool_appends_per_s"`
	CPUBusy       []float64 `json:"cpu_busy"`
}

type shipKey struct{ path, codec string }

type shipAgg struct {
	best   shipRun
	rounds []float64
}

var shipOrder = []shipKey{{"spool", "snappy"}, {"kafkago", "snappy"}, {"kgo-sync", "snappy"}, {"kgo-async", "snappy"},
	{"spool", "none"}, {"spool", "lz4"}, {"spool", "zstd"}}

var shipLabel = map[string]string{
	"spool":     "spool → logship Shipper (kafka-go)",
	"kafkago":   "kafka-go Writer from memory, 1000-record calls",
	"kgo-sync":  "franz-go kgo, ProduceSync of 1000 records",
	"kgo-async": "franz-go kgo, Produce all then Flush",
}

func (r *report) shipBench() map[shipKey]*shipAgg {
	out := map[shipKey]*shipAgg{}
	b, err := os.ReadFile(filepath.Join(r.dir, "shipbench.jsonl"))
	if err != nil {
		r.fail("shipping: no output")
		return out
	}
	for line := range strings.Lines(string(b)) {
		var s shipRun
		if json.Unmarshal([]byte(line), &s) != nil {
			continue
		}
		if s.BrokerRecords < int64(s.Records) {
			r.fail("shipping %s %s: the broker holds %d of %d records", s.Path, s.Compression, s.BrokerRecords, s.Records)
		}
		k := shipKey{s.Path, s.Compression}
		a := out[k]
		if a == nil {
			a = &shipAgg{}
			out[k] = a
		}
		a.rounds = append(a.rounds, s.RecordsPerSec)
		if s.RecordsPerSec > a.best.RecordsPerSec {
			a.best = s
		}
	}
	return out
}

func (r *report) shipTargets(s map[shipKey]*shipAgg, c map[string]*httpCase) {
	sp, ok1 := s[shipKey{"spool", "snappy"}]
	mem, ok2 := s[shipKey{"kafkago", "snappy"}]
	a := c["a_valid"]
	if ok1 {
		v := sp.best.RecordsPerSec / a.w.rps()
		r.target("shipping vs what one core serves", fmt.Sprintf("%s records/s = %sx the beacon's %s req/s",
			thousands(sp.best.RecordsPerSec), f2(v), thousands(a.w.rps())), "≥ 10x", a.ok, v >= 10)
	} else {
		r.target("shipping vs what one core serves", "–", "≥ 10x", false, false)
	}
	if ok1 && ok2 {
		v := sp.best.RecordsPerSec / mem.best.RecordsPerSec
		r.target("shipping through the spool vs kafka-go from memory", "spool/memory = "+f2(v), "≥ 0.8", true, v >= 0.8)
	} else {
		r.target("shipping through the spool vs kafka-go from memory", "–", "≥ 0.8", false, false)
	}
}

func (r *report) shipSection(b *bytes.Buffer, m map[string]string, s map[shipKey]*shipAgg, c map[string]*httpCase) {
	fmt.Fprintf(b, "## Shipping to a broker in another process\n\n")
	fmt.Fprintf(b, "`bench/cmd/shipbench`: %s typical records (", m["records"])
	for _, a := range s {
		fmt.Fprintf(b, "%.0f bytes of JSON on average", a.best.RecordBytes)
		break
	}
	fmt.Fprintf(b, ", 10,000 distinct 32-hex keys) to a fresh `bin/kbroker` topic of %s partitions,\n", m["partitions"])
	fmt.Fprintf(b, "acks=all. The client runs on CPU %s with `GOMAXPROCS=1`, the broker on CPU %s. The spool path is the product's\n", m["server_cpu"], m["load_cpu"])
	fmt.Fprintf(b, "`logship.OpenSpool` + `logship.NewShipper` with its defaults (batches of 1000, murmur2; the spool is full, so its linger never waits), timed\n")
	fmt.Fprintf(b, "from the shipper's start until `Stats.Shipped` reaches the count (the spool was filled before); kafka-go from\n")
	fmt.Fprintf(b, "memory is kafka-go's Writer with the same settings (`refwriter.New`, BatchTimeout 1µs). CPU is the client process's (getrusage), bytes are what it wrote to\n")
	fmt.Fprintf(b, "the broker's sockets; \"CPU busy\" is the client's and the broker's core during the run. Best of %s rounds;\n", m["ship_rounds"])
	fmt.Fprintf(b, "every round's records/s in the last column.\n\n")
	fmt.Fprintf(b, "| path | compression | records/s | CPU µs/record | bytes/record on the wire | CPU busy %% (client, broker) | rounds |\n|---|---|---:|---:|---:|---:|---|\n")
	for _, k := range shipOrder {
		a, ok := s[k]
		if !ok {
			fmt.Fprintf(b, "| %s | %s | failed | | | | |\n", shipLabel[k.path], k.codec)
			continue
		}
		var busy []string
		for _, v := range a.best.CPUBusy {
			busy = append(busy, fmtF(100*v, 0))
		}
		var rounds []string
		for _, v := range a.rounds {
			rounds = append(rounds, thousands(v))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", shipLabel[k.path], k.codec, thousands(a.best.RecordsPerSec),
			fmtF(a.best.CPUMicros, 2), fmtF(a.best.WirePerRec, 0), strings.Join(busy, ", "), strings.Join(rounds, " / "))
	}
	if a, ok := s[shipKey{"spool", "snappy"}]; ok && a.best.FillPerSec > 0 {
		fmt.Fprintf(b, "\nFilling the spool before the timed part (one goroutine, `Append`): %s records/s.\n", thousands(a.best.FillPerSec))
	}
	b.WriteString("\n")
}

// liveRun is one line of shipbench -path live output.
type liveRun struct {
	BatchTimeout    string  `json:"batch_timeout"`
	Records         int     `json:"records"`
	CPUMicros       float64 `json:"cpu_us_per_record"`
	WirePerRec      float64 `json:"wire_bytes_per_record"`
	BrokerRecords   int64   `json:"broker_records"`
	Rate            float64 `json:"rate"`
	AppendedPerSec  float64 `json:"appended_per_s"`
	RecordsPerWrite float64 `json:"records_per_write"`
	LagP50          float64 `json:"lag_p50_ms"`
	LagP99          float64 `json:"lag_p99_ms"`
	LagMax          float64 `json:"lag_max_ms"`
	DelayP50        float64 `json:"record_delay_p50_ms"`
	DelayP99        float64 `json:"record_delay_p99_ms"`
	DelayMax        float64 `json:"record_delay_max_ms"`
}

// liveOrder is the batch timeouts run.sh runs, in the table's order.
var liveOrder = []string{"-1ns", "5ms", "20ms"}

var liveLabel = map[string]string{"-1ns": "at once (-1ns)", "5ms": "5ms (librdkafka's and the Java client's default)", "20ms": "20ms (the default)"}

// liveBench reads shipbench-live.jsonl: each batch timeout's rounds.
func (r *report) liveBench() map[string][]liveRun {
	out := map[string][]liveRun{}
	b, err := os.ReadFile(filepath.Join(r.dir, "shipbench-live.jsonl"))
	if err != nil {
		r.fail("shipping under steady traffic: no output")
		return out
	}
	for line := range strings.Lines(string(b)) {
		var x liveRun
		if json.Unmarshal([]byte(line), &x) != nil || x.Records == 0 {
			continue
		}
		if x.BrokerRecords < int64(x.Records) {
			r.fail("shipping under steady traffic, batch timeout %s: the broker holds %d of %d records", x.BatchTimeout, x.BrokerRecords, x.Records)
		}
		out[x.BatchTimeout] = append(out[x.BatchTimeout], x)
	}
	return out
}

// median of the rounds' values of one field.
func median(rounds []liveRun, f func(liveRun) float64) float64 {
	v := make([]float64, len(rounds))
	for i, x := range rounds {
		v[i] = f(x)
	}
	return medianOf(v)
}

// medianOf is the median of v (the mean of the middle two for an even
// count), NaN for none; v is sorted in place.
func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

func (r *report) liveSection(b *bytes.Buffer, m map[string]string, live map[string][]liveRun) {
	fmt.Fprintf(b, "### Linger under steady traffic\n\n")
	if len(live) == 0 {
		fmt.Fprintf(b, "No results.\n\n")
		return
	}
	fmt.Fprintf(b, "`shipbench -path live`: the product's spool and Shipper in one process (CPU %s, `GOMAXPROCS=1`), one goroutine\n", m["server_cpu"])
	fmt.Fprintf(b, "appending %s records/s for %s in a burst every millisecond, as request handlers would, while the Shipper ships\n", thousands(num(m, "live_rate")), m["live_duration"])
	fmt.Fprintf(b, "them to a fresh broker with the row's `batch_timeout` (the linger: a read that finds fewer than 1000 records waits\n")
	fmt.Fprintf(b, "until the oldest is that old, then reads again). CPU is that process's over the records (getrusage), the appends\n")
	fmt.Fprintf(b, "and the shipping on one core: the appends cost about the same in every row, so the difference between rows is\n")
	fmt.Fprintf(b, "the cost of the writes. Lag is `Spool.Lag`, what `b2s_shipper_lag_seconds` shows (the age of the oldest record read\n")
	fmt.Fprintf(b, "but not yet acknowledged), sampled about every millisecond: a share of the time, and records not yet read count as\n")
	fmt.Fprintf(b, "none, which is why writing at once shows about 0. The record delay is each record's, from its append until Kafka\n")
	fmt.Fprintf(b, "acknowledged it, as seen by the same sampler (so up to about a millisecond late). Each column is the median of its\n")
	fmt.Fprintf(b, "rounds (the settings alternate within a round); the last column is every round's CPU.\n\n")
	fmt.Fprintf(b, "| batch_timeout | records/s appended | records per write | CPU µs/record | bytes/record on the wire | lag p50 / p99 / max ms | record delay p50 / p99 / max ms | CPU µs/record of each round |\n")
	fmt.Fprintf(b, "|---|---:|---:|---:|---:|---:|---:|---|\n")
	order := slices.Clone(liveOrder)
	var extra []string
	for k := range live {
		if !slices.Contains(order, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	order = append(order, extra...)
	cpu := map[string]float64{}
	rpw := map[string]float64{}
	for _, k := range order {
		label := liveLabel[k]
		if label == "" {
			label = k
		}
		rounds := live[k]
		if len(rounds) == 0 {
			fmt.Fprintf(b, "| %s | failed | | | | | | |\n", label)
			continue
		}
		med := func(f func(liveRun) float64) float64 { return median(rounds, f) }
		cpu[k] = med(func(x liveRun) float64 { return x.CPUMicros })
		rpw[k] = med(func(x liveRun) float64 { return x.RecordsPerWrite })
		ms := func(f func(liveRun) float64) string { return fmtF(med(f), 1) }
		var each []string
		for _, x := range rounds {
			each = append(each, fmtF(x.CPUMicros, 2))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s / %s / %s | %s / %s / %s | %s |\n", label,
			thousands(med(func(x liveRun) float64 { return x.AppendedPerSec })), fmtF(rpw[k], 0), fmtF(cpu[k], 2),
			fmtF(med(func(x liveRun) float64 { return x.WirePerRec }), 0),
			ms(func(x liveRun) float64 { return x.LagP50 }), ms(func(x liveRun) float64 { return x.LagP99 }),
			ms(func(x liveRun) float64 { return x.LagMax }),
			ms(func(x liveRun) float64 { return x.DelayP50 }), ms(func(x liveRun) float64 { return x.DelayP99 }),
			ms(func(x liveRun) float64 { return x.DelayMax }), strings.Join(each, " / "))
	}
	// What a write costs, from the at-once and default rows: the CPU
	// saved per record over the writes saved per record.
	if c0, ok0 := cpu["-1ns"]; ok0 {
		if c1, ok1 := cpu["20ms"]; ok1 && rpw["-1ns"] > 0 && rpw["20ms"] > rpw["-1ns"] {
			perWrite := (c0 - c1) / (1/rpw["-1ns"] - 1/rpw["20ms"])
			fmt.Fprintf(b, "\nThe default linger saves %s µs of CPU per record against writing at once, for %s writes fewer per 1000\n",
				fmtF(c0-c1, 2), fmtF(1000/rpw["-1ns"]-1000/rpw["20ms"], 0))
			fmt.Fprintf(b, "records: about %s µs of CPU a write, whatever it carries.\n", fmtF(perWrite, 0))
		}
	}
	b.WriteString("\n")
}

func (r *report) memTargets(mem map[string]string) {
	idle := num(mem, "rss_idle_kib")
	peak, anon, file := r.outagePeakKiB(mem)
	d := (peak - idle) / 1024
	r.target("RSS during a Kafka outage, over idle",
		fmt.Sprintf("+%s MiB (%s → %s MiB; at the peak %s MiB anonymous, %s MiB mapped files)", fmtF(d, 1),
			fmtF(idle/1024, 1), fmtF(peak/1024, 1), fmtF(anon/1024, 1), fmtF(file/1024, 1)),
		"≤ 64 MiB", !math.IsNaN(d), d <= 64)
}

// outagePeakKiB is the largest VmRSS sampled during the outage, or at its
// end, with its anonymous and file-backed parts.
func (r *report) outagePeakKiB(mem map[string]string) (rss, anon, file float64) {
	rss, anon, file = num(mem, "rss_outage_kib"), num(mem, "rss_outage_anon_kib"), num(mem, "rss_outage_file_kib")
	start, end := num(mem, "outage_start"), num(mem, "outage_end")
	for line := range strings.Lines(readString(filepath.Join(r.dir, "memory-rss.txt"))) {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		var v [4]float64
		for i := range f {
			v[i], _ = strconv.ParseFloat(f[i], 64)
		}
		if v[0] >= start && v[0] <= end && v[1] > rss {
			rss, anon, file = v[1], v[2], v[3]
		}
	}
	return rss, anon, file
}

func (r *report) memSection(b *bytes.Buffer, m, mem map[string]string) {
	fmt.Fprintf(b, "## Memory through a Kafka outage\n\n")
	if len(mem) == 0 {
		r.fail("memory: no results")
		fmt.Fprintf(b, "No results.\n\n")
		return
	}
	w, ok := r.wrk("memory-outage.wrk.txt")
	if !ok {
		r.fail("memory: no wrk result")
	} else if w.errors() > 0 {
		r.fail("memory: %.0f responses were not 200 during the outage", w.errors())
	}
	mib := func(k string) string { return fmtF(num(mem, k)/1024, 1) }
	fmt.Fprintf(b, "A fresh `bin/caddy` (`GOMAXPROCS=1`, CPU %s) with the broker up; then the broker stopped and %s of\n", m["server_cpu"], m["outage"])
	fmt.Fprintf(b, "beacons with a valid cookie (%s req/s, p99 %s, %s responses not 200); then the broker started again\n", thousands(w.rps()), us(w.LatP99), thousands(w.errors()))
	fmt.Fprintf(b, "(empty, memory only) until the spool drained. VmRSS from `/proc/<pid>/status`, sampled every second in\n")
	fmt.Fprintf(b, "`bench/results/memory-rss.txt`.\n\n")
	fmt.Fprintf(b, "| state | VmRSS MiB | anonymous MiB | mapped files MiB | notes |\n|---|---:|---:|---:|---|\n")
	row := func(state, key, notes string) {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", state, mib(key+"_kib"), mib(key+"_anon_kib"), mib(key+"_file_kib"), notes)
	}
	row("idle after start", "rss_idle", "")
	peak, _, _ := r.outagePeakKiB(mem)
	row("end of the outage", "rss_outage", fmt.Sprintf("peak VmRSS sampled during it %s MiB; %s records spooled, %s MiB of spool (%s bytes a record), sink degraded = %s, dropped %s",
		fmtF(peak/1024, 1), thousands(num(mem, "spooled_outage")),
		fmtF(num(mem, "spool_bytes_outage")/(1<<20), 0), fmtF(num(mem, "spool_bytes_outage")/num(mem, "spooled_outage"), 0),
		mem["degraded_outage"], mem["dropped_outage"]))
	drained := num(mem, "spooled_total") - num(mem, "shipped_outage")
	row("spool drained", "rss_drained", fmt.Sprintf("%s s after the broker came back (≈ %s records/s, reconnecting included; server CPU %s µs/record); VmHWM %s MiB",
		mem["drain_s"], thousands(drained/num(mem, "drain_s")),
		fmtF(num(mem, "drain_server_ticks")*1e6/num(mem, "clk_tck")/drained, 2), mib("hwm_drained_kib")))
	row("5 s later", "rss_drained_5s", "")
	fmt.Fprintf(b, "\nRecords: %s spooled, %s shipped, the broker holds %s; Kafka write errors during the outage: %s.\n\n",
		thousands(num(mem, "spooled_total")), thousands(num(mem, "shipped_total")), thousands(num(mem, "broker_records")), mem["write_errors"])
	if num(mem, "shipped_total") < num(mem, "spooled_total") {
		r.fail("memory: %s of %s records shipped after the outage", mem["shipped_total"], mem["spooled_total"])
	}
	if num(mem, "broker_records") < num(mem, "spooled_total") {
		r.fail("memory: the broker holds %s records, %s were spooled", mem["broker_records"], mem["spooled_total"])
	}
	if mem["dropped_outage"] != "0" {
		r.fail("memory: %s records dropped during the outage", mem["dropped_outage"])
	}
}

// profileRows are the functions whose cumulative share of the server's
// CPU the report shows, by a suffix of pprof's function name.
var profileRows = []struct{ label, suffix string }{
	{"read and parse the request (`net/http.(*conn).readRequest`)", "net/http.(*conn).readRequest"},
	{"write the response (`net/http.(*response).finishRequest`)", "net/http.(*response).finishRequest"},
	{"`b2s_collect` (`caddymodule.(*Collect).ServeHTTP`)", "caddymodule.(*Collect).ServeHTTP"},
	{"↳ GeoIP lookup (`geo.(*DB).Lookup`)", "geo.(*DB).Lookup"},
	{"↳ record encoding + spool append (`caddymodule.(*Collect).emit`)", "caddymodule.(*Collect).emit"},
	{"↳ ↳ spool append (`logship.(*Spool).Append`)", "logship.(*Spool).Append"},
	{"`reverse_proxy` (`reverseproxy.(*Handler).ServeHTTP`)", "reverseproxy.(*Handler).ServeHTTP"},
	{"shipper goroutine (`logship.(*Shipper).run`)", "logship.(*Shipper).run"},
	{"kafka-go connection goroutine (`kafka-go.(*conn).run`)", "kafka-go.(*conn).run"},
	{"`header` + `respond` (`headers.Handler`, `StaticResponse`)", "headers.Handler.ServeHTTP|caddyhttp.StaticResponse.ServeHTTP"},
	{"garbage collector, background (`runtime.gcBgMarkWorker`)", "runtime.gcBgMarkWorker"},
	{"all allocation (`runtime.mallocgc`)", "runtime.mallocgc"},
}

func (r *report) profileSection(b *bytes.Buffer, c map[string]*httpCase) {
	profiles := []struct{ name, caseID string }{{"beacon-valid", "a_valid"}, {"beacon-new", "a_new"}, {"respond", "b_respond"},
		{"page-valid", "e_b2s_valid"}, {"page-plain", "e_plain"}}
	cum := map[string]map[string]float64{}
	for _, p := range profiles {
		cum[p.name] = pprofCum(filepath.Join(r.dir, "profile-"+p.name+".cum.txt"))
	}
	for _, p := range profiles {
		if c[p.caseID] == nil {
			return // a case that did not run: no section rather than a wrong one
		}
	}
	if len(cum["beacon-valid"]) == 0 {
		return
	}
	fmt.Fprintf(b, "## Where the CPU goes\n\n")
	fmt.Fprintf(b, "CPU profiles of bin/caddy from its admin endpoint (`/debug/pprof/profile`) while wrk loads a case (round\n")
	fmt.Fprintf(b, "1, not timed). Cumulative share of the server's CPU time, and that share of the case's CPU µs per\n")
	fmt.Fprintf(b, "request from the table above (an estimate: the profiled run is not the timed one). Functions overlap\n")
	fmt.Fprintf(b, "(rows marked ↳ are inside the row above). Full listings: `bench/results/profile-*.txt`, profiles:\n")
	fmt.Fprintf(b, "`go tool pprof bin/caddy bench/results/profile-beacon-valid.pprof`.\n\n")
	fmt.Fprintf(b, "| function | beacon, valid cookie | beacon, new cookie | `respond` | page with `b2s_collect`, valid cookie | page without |\n|---|---:|---:|---:|---:|---:|\n")
	for _, row := range profileRows {
		fmt.Fprintf(b, "| %s |", row.label)
		for _, p := range profiles {
			var share float64
			for _, suf := range strings.Split(row.suffix, "|") {
				for name, v := range cum[p.name] {
					if strings.HasSuffix(withoutTypeArgs(name), suf) {
						share += v
					}
				}
			}
			if share == 0 {
				fmt.Fprintf(b, " – |")
				continue
			}
			fmt.Fprintf(b, " %s%% ≈ %s µs |", fmtF(share, 1), fmtF(share/100*c[p.caseID].cpuPerReq("server_ticks_run"), 1))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	r.perfSection(b)
}

// pprofCum reads a `go tool pprof -top -cum` listing: function → cum%.
// withoutTypeArgs drops the type arguments of generic functions from a
// function name, "geo.(*DB[...]).Lookup" or with the shape spelled out, so
// that profileRows name them as "geo.(*DB).Lookup".
func withoutTypeArgs(name string) string {
	var b strings.Builder
	depth := 0
	for _, r := range name {
		switch {
		case r == '[':
			depth++
		case r == ']' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func pprofCum(path string) map[string]float64 {
	out := map[string]float64{}
	for line := range strings.Lines(readString(path)) {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasSuffix(f[4], "%") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err != nil {
			continue
		}
		out[strings.Join(f[5:], " ")] = v
	}
	return out
}

func (r *report) appendSection(b *bytes.Buffer, m map[string]string) {
	type res struct {
		Fsync    string  `json:"fsync"`
		N        int     `json:"appends"`
		MeanNS   float64 `json:"mean_ns"`
		P50NS    float64 `json:"p50_ns"`
		P99NS    float64 `json:"p99_ns"`
		P999NS   float64 `json:"p99_9_ns"`
		P9999NS  float64 `json:"p99_99_ns"`
		MaxNS    float64 `json:"max_ns"`
		Over1ms  int     `json:"over_1ms"`
		Segments int64   `json:"segments_filled"`
	}
	var rows []res
	for line := range strings.Lines(readString(filepath.Join(r.dir, "appendlat.jsonl"))) {
		var x res
		if json.Unmarshal([]byte(line), &x) == nil && x.N > 0 {
			rows = append(rows, x)
		}
	}
	if len(rows) == 0 {
		r.fail("spool append latency: no results")
		return
	}
	fmt.Fprintf(b, "## Spool append latency\n\n")
	fmt.Fprintf(b, "`bench/cmd/appendlat`: %s `Spool.Append` calls of a 640-byte record, one goroutine, CPU %s, `GOMAXPROCS=1`,\n", m["appends"], m["server_cpu"])
	fmt.Fprintf(b, "each timed. The mean is what the Go benchmark shows; the tail is what a beacon waits for when it\n")
	fmt.Fprintf(b, "appends while the spool rolls to a new segment or the kernel writes pages back.\n\n")
	fmt.Fprintf(b, "| fsync | mean | p50 | p99 | p99.9 | p99.99 | max | appends over 1 ms | segments filled |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	ns := func(v float64) string {
		switch {
		case v >= 1e6:
			return fmtF(v/1e6, 2) + " ms"
		case v >= 1e3:
			return fmtF(v/1e3, 1) + " µs"
		}
		return fmtF(v, 0) + " ns"
	}
	for _, x := range rows {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %d | %d |\n", x.Fsync, ns(x.MeanNS), ns(x.P50NS), ns(x.P99NS), ns(x.P999NS),
			ns(x.P9999NS), ns(x.MaxNS), x.Over1ms, x.Segments)
	}
	b.WriteString("\n")
}
