#!/usr/bin/env bash
# bench/run.sh, run by `make bench`: the HTTP load tests (wrk against
# bin/caddy and nginx, server on one core, load on another), the memory of
# bin/caddy through a Kafka outage, shipping to a broker in another process
# (bench/cmd/shipbench), the spool's append latency (bench/cmd/appendlat)
# and the Go benchmarks; then docs/benchmarks.md from the raw outputs in
# bench/results/ (bench/cmd/benchreport).
#
# Everything listens on 127.0.0.1. Settings come from the environment (the
# Makefile passes its BENCH_* variables); see docs/benchmarks.md. The
# shipping part ends with the shipper under steady traffic: BENCH_LIVE_RATE
# records/s appended for BENCH_LIVE_DURATION while it ships them, for three
# batch timeouts (linger). The HTTP part ends with the beacon and respond at
# the same fixed rate, BENCH_LAT_RATE req/s (latency at equal load).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-5s}
WARMUP=${BENCH_WARMUP:-2s}
CONNS=${BENCH_CONNECTIONS:-64}
HTTP_ROUNDS=${BENCH_HTTP_ROUNDS:-4}
OUTAGE=${BENCH_OUTAGE:-20s}
RECORDS=${BENCH_RECORDS:-300000}
APPENDS=${BENCH_APPENDS:-1000000}
SHIP_ROUNDS=${BENCH_SHIP_ROUNDS:-2}
LIVE_RATE=${BENCH_LIVE_RATE:-25000}
LIVE_DURATION=${BENCH_LIVE_DURATION:-5s}
LAT_RATE=${BENCH_LAT_RATE:-10000}
GOTIME=${BENCH_GOTIME:-1s}
PARTITIONS=${BENCH_PARTITIONS:-6}
PROFILE=${BENCH_PROFILE:-5}
SPIN=${BENCH_SPIN:-3us}
SPIN_PAGE=${BENCH_SPIN_PAGE:-4us}
DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-120}
PORT_BASE=${BENCH_PORT_BASE:-18400}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
GO=${GO:-go}
BIN=${BIN:-bin}
R=bench/results
OUT=${BENCH_OUT:-docs/benchmarks.md}

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# fail: a check that failed; the run goes on, the report lists it and
# make bench exits non-zero.
fail() { log "FAILED: $*"; echo "$*" >>"$R/failures.txt"; }

# ---------------------------------------------------------------- system

install_missing() {
	local need=()
	command -v wrk >/dev/null || need+=(wrk)
	command -v nginx >/dev/null || need+=(nginx)
	command -v taskset >/dev/null || need+=(util-linux)
	command -v curl >/dev/null || need+=(curl)
	command -v pgrep >/dev/null || need+=(procps)
	[ ${#need[@]} = 0 ] && return
	[ "$(id -u)" = 0 ] || die "missing ${need[*]}: run 'sudo apt-get install ${need[*]}'"
	log "installing ${need[*]} (Debian packages)"
	# Keep the package from starting an nginx service of its own.
	local policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
	fi
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
		{ [[ " ${need[*]} " == *" nginx "* ]] &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; } ||
		{ [ -n "$policy" ] && rm -f "$policy"; die "apt-get install ${need[*]} failed"; }
	[ -n "$policy" ] && rm -f "$policy"
	return 0
}

install_missing
# perf is optional (the kernel-inclusive profile): try it, go on without.
if ! command -v perf >/dev/null && [ "$(id -u)" = 0 ]; then
	log "installing linux-perf (optional)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null 2>&1 || log "linux-perf not installed; going on without perf"
fi
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (server and load generator on different cores); nproc is $(nproc)"
for b in caddy kbroker demogeo; do [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run 'make build'"; done

ADMIN=$((PORT_BASE)) KAFKA=$((PORT_BASE + 1))
PORT_A=$((PORT_BASE + 2)) PORT_B=$((PORT_BASE + 3)) PORT_B2=$((PORT_BASE + 4)) PORT_C=$((PORT_BASE + 5))
PORT_D=$((PORT_BASE + 6)) PORT_E1=$((PORT_BASE + 7)) PORT_E0=$((PORT_BASE + 8)) PORT_UP=$((PORT_BASE + 9))
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $(seq "$PORT_BASE" $((PORT_BASE + 9))); do
	port_open "$p" && die "port $p is in use; set BENCH_PORT_BASE to a free range of 10 ports"
done

rm -rf "$R"
mkdir -p "$R/http" "$R/logs" "$R/bin"
: >"$R/failures.txt"
WORK=$(mktemp -d /tmp/b2s-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/nginx-tmp"
cp -r bench/www "$WORK/www"

# ------------------------------------------------------------- processes

PIDS=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local i
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CPU ENV... -- CMD...: runs CMD pinned to CPU, logging to
# $R/logs/NAME.log, and sets STARTED to its pid (taskset and env exec, so
# it is the server's own pid).
start() {
	local name=$1 cpu=$2
	shift 2
	local envs=()
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	env "${envs[@]}" taskset -c "$cpu" "$@" >>"$R/logs/$name.log" 2>&1 &
	STARTED=$!
	PIDS+=("$STARTED")
}

stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || true
	local keep=() p
	for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

wait_port() {
	local port=$1 pid=$2 i
	for i in $(seq 200); do
		port_open "$port" && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

start_broker() {
	start kbroker "$LOAD_CPU" -- "$BIN/kbroker" -addr "127.0.0.1:$KAFKA" -partitions "$PARTITIONS" -topic "$1"
	BROKER=$STARTED
	wait_port "$KAFKA" "$BROKER" || die "kbroker did not start (see $R/logs/kbroker.log)"
}

export B2S_SECRET
B2S_SECRET=$(head -c 48 /dev/urandom | base64 -w0)
start_caddy() { # SPOOL_DIR [GEOIP]
	start caddy "$SERVER_CPU" GOMAXPROCS=1 BENCH_GEOIP="${2-$WORK/geo.mmdb}" HOME="$WORK" XDG_DATA_HOME="$WORK" XDG_CONFIG_HOME="$WORK" \
		BENCH_WORK="$WORK" BENCH_SPOOL="$1" BENCH_ADMIN_PORT="$ADMIN" BENCH_KAFKA_PORT="$KAFKA" \
		BENCH_PORT_A="$PORT_A" BENCH_PORT_B="$PORT_B" BENCH_PORT_B2="$PORT_B2" BENCH_PORT_C="$PORT_C" \
		BENCH_PORT_E1="$PORT_E1" BENCH_PORT_E0="$PORT_E0" BENCH_UPSTREAM_PORT="$PORT_UP" \
		-- "$BIN/caddy" run --config bench/Caddyfile --adapter caddyfile
	CADDY=$STARTED
	wait_port "$ADMIN" "$CADDY" && wait_port "$PORT_A" "$CADDY" || die "caddy did not start (see $R/logs/caddy.log)"
}

start_spin() {
	start spincaddy "$SERVER_CPU" GOMAXPROCS=1 HOME="$WORK" XDG_DATA_HOME="$WORK" XDG_CONFIG_HOME="$WORK" \
		BENCH_ADMIN_PORT="$ADMIN" BENCH_PORT_B="$PORT_B" BENCH_PORT_SPIN="$PORT_A" BENCH_SPIN="$SPIN" \
		BENCH_PORT_E0="$PORT_E0" BENCH_PORT_E1="$PORT_E1" BENCH_UPSTREAM_PORT="$PORT_UP" BENCH_SPIN_PAGE="$SPIN_PAGE" \
		-- "$R/bin/spincaddy" run --config bench/Caddyfile.spin --adapter caddyfile
	CADDY=$STARTED
	wait_port "$ADMIN" "$CADDY" && wait_port "$PORT_A" "$CADDY" || die "spincaddy did not start (see $R/logs/spincaddy.log)"
}

start_nginx() { # NAME CPU PORT
	sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$3|g" "bench/nginx/$1.conf" >"$WORK/nginx-$1.conf"
	start "nginx-$1" "$2" -- nginx -c "$WORK/nginx-$1.conf" -p "$WORK"
	NGINX=$STARTED
	wait_port "$3" "$NGINX" || die "nginx ($1) did not start (see $R/logs/nginx-$1.log)"
}

# ---------------------------------------------------------- measurements

CLK_TCK=$(getconf CLK_TCK)

# proc_ticks PID...: utime+stime of the processes, in clock ticks.
proc_ticks() {
	local t=0 p v
	for p in "$@"; do
		v=$(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
		t=$((t + v))
	done
	echo "$t"
}

# cpu_snap: per CPU from /proc/stat, on one line: "processes irq steal
# total" in clock ticks (processes: user, nice, system; irq: hard and soft
# interrupts, where the kernel's loopback network work mostly lands).
cpu_snap() { awk '/^cpu[0-9]/ {print $2 + $3 + $4, $7 + $8, $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat | tr '\n' ' '; }
# cpu_pct "SNAP0" "SNAP1" FIELD: percentage of each CPU's time spent on
# FIELD (0 processes, 1 irq, 2 steal, -1 all busy) between two snapshots.
cpu_pct() {
	local -a a=($1) b=($2)
	local i out=() v
	for ((i = 0; i < ${#a[@]}; i += 4)); do
		if [ "$3" = -1 ]; then
			v=$(((b[i] + b[i + 1] + b[i + 2]) - (a[i] + a[i + 1] + a[i + 2])))
		else
			v=$((b[i + $3] - a[i + $3]))
		fi
		out+=("$(awk -v b="$v" -v t="$((b[i + 3] - a[i + 3]))" 'BEGIN {printf "%.0f", t ? 100 * b / t : 0}')")
	done
	(IFS=,; echo "${out[*]}")
}

# rss_env PID PREFIX: VmRSS and its parts (anonymous: the Go heap and
# stacks; file: mapped files, such as a memory-mapped spool segment) as
# PREFIX_kib=, PREFIX_anon_kib=, PREFIX_file_kib= lines.
rss_env() {
	awk -v p="$2" '/^VmRSS:/ {print p "_kib=" $2} /^RssAnon:/ {print p "_anon_kib=" $2}
		/^RssFile:/ {print p "_file_kib=" $2}' "/proc/$1/status"
}
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# metric NAME: a b2s counter or gauge from Caddy's admin /metrics.
metric() {
	curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics" |
		awk -v n="$1" '$1 == n {printf "%.0f\n", $2; f = 1} END {if (!f) print -1}'
}

# wait_drain: until Kafka acknowledged every spooled record; prints the
# seconds it took.
wait_drain() {
	local t0 spooled shipped
	t0=$(date +%s.%N)
	while :; do
		spooled=$(metric b2s_records_spooled_total)
		shipped=$(metric b2s_records_shipped_total)
		[ "$shipped" -ge "$spooled" ] && [ "$spooled" -ge 0 ] && break
		if awk -v a="$t0" -v b="$(date +%s.%N)" -v m="$DRAIN_TIMEOUT" 'BEGIN {exit !(b - a > m)}'; then
			log "warning: $shipped of $spooled records shipped after ${DRAIN_TIMEOUT}s"
			fail "records not all shipped within ${DRAIN_TIMEOUT}s ($shipped of $spooled)"
			break
		fi
		sleep 0.2
	done
	awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f\n", b - a}'
}

UA='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
REFERER='https://www.b2s.com/products/cnc-spindle?ref=home'
BEACON='/b.gif?e=pageview&u=https%3A%2F%2Fwww.b2s.com%2Fproducts%2Fcnc-spindle%3Fref%3Dhome&r=https%3A%2F%2Fsearch.example%2F%3Fq%3Dcnc%2Bspindle&product=42&lang=zh-CN'
PAGE='/products/cnc-spindle?ref=home'
OTHER_COOKIES='_ga=GA1.2.1596841223.1732800000; lang=zh-CN'

# check URL WANT_BODY_FILE|- HEADER...: one request must answer 200 (and
# the given body); prints the response headers.
check() {
	local url=$1 body=$2
	shift 2
	local hdr=() h code
	for h in "$@"; do hdr+=(-H "$h"); done
	code=$(curl -s -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' "${hdr[@]}" "$url") || code=000
	[ "$code" = 200 ] || die "$url answered $code, want 200"
	if [ "$body" != - ]; then cmp -s "$WORK/body" "$body" || die "$url: unexpected body (want the bytes of $body)"; fi
	cat "$WORK/headers"
}

set_cookie() { tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: b2sid=\([^;]*\).*/\1/p' | head -1; }

# run_case ID URL B2S(0|1) "PIDS" HEADER...: a warm-up, then the timed wrk
# run, with the server's CPU time around it and, for b2s cases, the
# records spooled and shipped. $BEFORE_TIMED, if set, runs between them.
run_case() {
	local id=$1 url=$2 b2s=$3 pids=$4
	shift 4
	local hdr=() h out="$R/http/$id.r$ROUND"
	for h in "$@"; do hdr+=(-H "$h"); done
	log "http round $ROUND/$HTTP_ROUNDS $id: $url"
	taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$WARMUP" --latency -s bench/wrk.lua "${hdr[@]}" "$url" \
		>"$out.warmup.txt" 2>&1 || fail "$id: warm-up wrk failed"
	local drain0=0 sp0=0 sh0=0 dr0=0
	[ "$b2s" = 1 ] && drain0=$(wait_drain)
	[ -n "${BEFORE_TIMED:-}" ] && eval "$BEFORE_TIMED"
	if [ "$b2s" = 1 ]; then
		sp0=$(metric b2s_records_spooled_total) sh0=$(metric b2s_records_shipped_total)
		dr0=$(($(metric 'b2s_records_dropped_total{reason="spool_full"}') + $(metric 'b2s_records_dropped_total{reason="spool_error"}')))
	fi
	local c0 c1 t0 t1 t2 wrkcpu
	c0=$(cpu_snap)
	t0=$(proc_ticks $pids)
	local TIMEFORMAT='%U %S'
	{ time taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s bench/wrk.lua "${hdr[@]}" "$url" \
		>"$out.txt" 2>&1; } 2>"$out.time" || fail "$id: wrk failed"
	t1=$(proc_ticks $pids)
	c1=$(cpu_snap)
	wrkcpu=$(awk '{print $1 + $2}' "$out.time")
	local drain=0 sp1=0 sh1=0 dr1=0
	t2=$t1
	if [ "$b2s" = 1 ]; then
		drain=$(wait_drain)
		t2=$(proc_ticks $pids)
		sp1=$(metric b2s_records_spooled_total) sh1=$(metric b2s_records_shipped_total)
		dr1=$(($(metric 'b2s_records_dropped_total{reason="spool_full"}') + $(metric 'b2s_records_dropped_total{reason="spool_error"}')))
	fi
	cat >"$out.env" <<-EOF
		id=$id
		url=$url
		b2s=$b2s
		clk_tck=$CLK_TCK
		server_ticks_run=$((t1 - t0))
		server_ticks_with_drain=$((t2 - t0))
		cpu_busy_pct=$(cpu_pct "$c0" "$c1" -1)
		cpu_proc_pct=$(cpu_pct "$c0" "$c1" 0)
		cpu_irq_pct=$(cpu_pct "$c0" "$c1" 1)
		cpu_steal_pct=$(cpu_pct "$c0" "$c1" 2)
		wrk_cpu_s=$wrkcpu
		drain_before_s=$drain0
		drain_after_s=$drain
		spooled=$((sp1 - sp0))
		shipped=$((sh1 - sh0))
		dropped=$((dr1 - dr0))
	EOF
	grep -q '^WRKJSON' "$out.txt" || fail "$id: no wrk summary"
	grep -h 'Non-2xx\|Socket errors' "$out.warmup.txt" "$out.txt" | sed "s/^/$id: /" >&2 || true
}

# load_bg OUT URL HEADER...: wrk loads URL in the background for
# $PROFILE seconds and one more on each side (its report to OUT), for a
# profile taken meanwhile; returns after the first second, with LOAD set
# to its pid. end_load waits for it.
load_bg() {
	local out=$1 url=$2
	shift 2
	local hdr=() h
	for h in "$@"; do hdr+=(-H "$h"); done
	taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d$((PROFILE + 2))s -s bench/wrk.lua "${hdr[@]}" "$url" >"$out" 2>&1 &
	LOAD=$!
	PIDS+=("$LOAD")
	sleep 1
}
end_load() {
	wait "$LOAD" || true
	stop_pid "$LOAD"
}

# profile ID URL HEADER...: a CPU profile from Caddy's admin endpoint while
# wrk loads URL (not timed, not in the table).
profile() {
	local id=$1
	shift
	log "profile $id: ${PROFILE}s"
	load_bg "$R/profile-$id.wrk.txt" "$@"
	curl -s -o "$R/profile-$id.pprof" "http://127.0.0.1:$ADMIN/debug/pprof/profile?seconds=$PROFILE" ||
		fail "profile $id failed"
	end_load
	"$GO" tool pprof -top -nodecount=45 "$BIN/caddy" "$R/profile-$id.pprof" >"$R/profile-$id.top.txt" 2>&1 || true
	"$GO" tool pprof -top -cum -nodecount=400 "$BIN/caddy" "$R/profile-$id.pprof" >"$R/profile-$id.cum.txt" 2>&1 || true
}

# perf_usable: perf can sample a process's kernel and user stacks here (it
# is optional: without it the report leaves out the kernel-inclusive
# breakdown and says why).
perf_usable() {
	command -v perf >/dev/null || return 1
	perf record -q -e cpu-clock -g -o "$WORK/perf-probe.data" -- true >/dev/null 2>&1
}

# perf_profile ID URL HEADER...: like profile, with perf sampling Caddy's
# threads, kernel included, with their call stacks, at 4999 Hz
# (cpu-clock, a software event: this VM has no hardware counters). Go's
# profiler sees only user space; perf also sees the TCP/IP work a write
# does in the writer's context and the page faults of spool writes. The
# stacks go to perf-ID.stacks.gz (perf script) for benchreport.
perf_profile() {
	local id=$1
	shift
	log "perf $id: ${PROFILE}s"
	load_bg "$R/perf-$id.wrk.txt" "$@"
	perf record -q -e cpu-clock -F 4999 -g -p "$CADDY" -o "$WORK/perf-$id.data" -- sleep "$PROFILE" \
		>"$R/logs/perf-$id.log" 2>&1 || fail "perf $id failed (see $R/logs/perf-$id.log)"
	end_load
	echo "seconds=$PROFILE" >"$R/perf-$id.env"
	perf script -i "$WORK/perf-$id.data" -F period,ip,sym,dso 2>>"$R/logs/perf-$id.log" | gzip -1 >"$R/perf-$id.stacks.gz"
	rm -f "$WORK/perf-$id.data"
}

# ----------------------------------------------------------------- start

{
	echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "nproc=$(nproc)"
	echo "cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "kernel=$(uname -sr)"
	echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
	echo "go_version=$($GO version | awk '{print $3, $4}')"
	echo "caddy_version=$("$BIN/caddy" version | awk '{print $1}')"
	echo "nginx_version=$(nginx -v 2>&1 | sed 's/^nginx version: //')"
	echo "wrk_version=$(dpkg-query -W -f '${Version}' wrk 2>/dev/null || echo unknown)"
	echo "commit=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- beacon logship caddymodule geo cmd 2>/dev/null || echo ' (with uncommitted changes)')"
	echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
	echo "mem_total=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
	echo "duration=$DURATION"
	echo "warmup=$WARMUP"
	echo "connections=$CONNS"
	echo "http_rounds=$HTTP_ROUNDS"
	echo "outage=$OUTAGE"
	echo "records=$RECORDS"
	echo "appends=$APPENDS"
	echo "ship_rounds=$SHIP_ROUNDS"
	echo "live_rate=$LIVE_RATE"
	echo "live_duration=$LIVE_DURATION"
	echo "gotime=$GOTIME"
	echo "partitions=$PARTITIONS"
	echo "spin=$SPIN"
	echo "spin_page=$SPIN_PAGE"
	echo "server_cpu=$SERVER_CPU"
	echo "load_cpu=$LOAD_CPU"
} >"$R/machine.env"

log "building bench tools"
"$GO" build -o "$R/bin/shipbench" ./bench/cmd/shipbench
"$GO" build -o "$R/bin/benchreport" ./bench/cmd/benchreport
"$GO" build -o "$R/bin/appendlat" ./bench/cmd/appendlat
"$GO" build -o "$R/bin/ratelat" ./bench/cmd/ratelat
"$GO" build -o "$R/bin/spincaddy" ./bench/cmd/spincaddy
"$BIN/demogeo" -o "$WORK/geo.mmdb" 2>>"$R/logs/demogeo.log"

# ------------------------------------------------------------------ HTTP

SECONDS=0
start_broker b2s.events
start_caddy "$WORK/spool"
start_nginx beacon "$SERVER_CPU" "$PORT_D"
NGINX_BEACON=$NGINX
start_nginx upstream "$LOAD_CPU" "$PORT_UP"
NGINX_WORKERS=$(pgrep -P "$NGINX_BEACON" | tr '\n' ' ')
[ -n "$NGINX_WORKERS" ] || die "no nginx worker process found"

# Every case answers 200 with what it should before anything is timed.
A=http://127.0.0.1:$PORT_A
check "$A$BEACON" "$WORK/www/b.gif" "User-Agent: $UA" "Referer: $REFERER" >"$R/http/response-a-new.txt"
COOKIE=$(set_cookie <"$R/http/response-a-new.txt")
[ -n "$COOKIE" ] || die "the beacon set no b2sid cookie"
check "$A$BEACON" "$WORK/www/b.gif" "Cookie: $OTHER_COOKIES; b2sid=$COOKIE" >"$R/http/response-a-valid.txt"
set_cookie <"$R/http/response-a-valid.txt" | grep -q . && die "the beacon set a cookie again for a valid one"
check "http://127.0.0.1:$PORT_B$BEACON" - >"$R/http/response-b.txt"
grep -qi '^content-length: 43' "$R/http/response-b.txt" || die "respond does not send 43 bytes"
check "http://127.0.0.1:$PORT_B2$BEACON" "$WORK/www/b.gif" >"$R/http/response-b2.txt"
check "http://127.0.0.1:$PORT_C$BEACON" - >"$R/http/response-c.txt"
check "http://127.0.0.1:$PORT_D$BEACON" - >"$R/http/response-d-new.txt"
NGINX_COOKIE=$(set_cookie <"$R/http/response-d-new.txt")
[ -n "$NGINX_COOKIE" ] || die "nginx set no b2sid cookie"
check "http://127.0.0.1:$PORT_E1$PAGE" "$WORK/www/index.html" "Cookie: $OTHER_COOKIES; b2sid=$COOKIE" >"$R/http/response-e1.txt"
check "http://127.0.0.1:$PORT_E0$PAGE" "$WORK/www/index.html" >"$R/http/response-e0.txt"
echo "$COOKIE" >"$R/http/cookie.txt"
wait_drain >/dev/null

H=("User-Agent: $UA" "Referer: $REFERER")
VALID="Cookie: $OTHER_COOKIES; b2sid=$COOKIE"
NONE="Cookie: $OTHER_COOKIES"
TOT_SPOOLED=0 TOT_SHIPPED=0 TOT_DROPPED=0 TOT_WERR=0
# caddy_totals: adds the running Caddy's counters to the section's totals,
# before it is stopped.
caddy_totals() {
	wait_drain >/dev/null
	TOT_SPOOLED=$((TOT_SPOOLED + $(metric b2s_records_spooled_total)))
	TOT_SHIPPED=$((TOT_SHIPPED + $(metric b2s_records_shipped_total)))
	TOT_DROPPED=$((TOT_DROPPED + $(metric 'b2s_records_dropped_total{reason="spool_full"}') + $(metric 'b2s_records_dropped_total{reason="spool_error"}')))
	TOT_WERR=$((TOT_WERR + $(metric b2s_kafka_write_errors_total)))
}

# Rounds run every case again, so that a disturbance of the machine during
# one case shows; the report takes each case's best, and for the ratios
# also pairs round k of one case with round k of the other (run close
# together in time) and takes the median of those. Many short rounds rather
# than a few long ones give it more pairs. Each round starts one case later
# in the list than the one before (the list wraps around), so that no case
# always runs first after Caddy starts, or always right after another.
case_a_valid() { run_case a_valid "$A$BEACON" 1 "$CADDY" "${H[@]}" "$VALID"; }
case_b_respond() { run_case b_respond "http://127.0.0.1:$PORT_B$BEACON" 0 "$CADDY" "${H[@]}" "$VALID"; }
case_a_new() { run_case a_new "$A$BEACON" 1 "$CADDY" "${H[@]}" "$NONE"; }
case_c_log() {
	BEFORE_TIMED=': >"$WORK/caddy-access.log"' run_case c_log "http://127.0.0.1:$PORT_C$BEACON" 0 "$CADDY" "${H[@]}" "$VALID"
	echo "log_lines=$(wc -l <"$WORK/caddy-access.log")" >>"$R/http/c_log.r$ROUND.env"
	head -1 "$WORK/caddy-access.log" >"$R/http/c_log.sample.json"
	: >"$WORK/caddy-access.log" # truncated, not removed: the server keeps it open
}
case_b_file() { run_case b_file "http://127.0.0.1:$PORT_B2$BEACON" 0 "$CADDY" "${H[@]}" "$VALID"; }
case_d() { # valid|new
	local c=$NONE
	if [ "$1" = valid ]; then c="Cookie: $OTHER_COOKIES; b2sid=$NGINX_COOKIE"; fi
	BEFORE_TIMED=': >"$WORK/nginx-access.log"' run_case "d_$1" "http://127.0.0.1:$PORT_D$BEACON" 0 \
		"$NGINX_BEACON $NGINX_WORKERS" "${H[@]}" "$c"
	echo "log_lines=$(wc -l <"$WORK/nginx-access.log")" >>"$R/http/d_$1.r$ROUND.env"
	tail -1 "$WORK/nginx-access.log" >"$R/http/d_$1.sample.json"
	: >"$WORK/nginx-access.log"
}
case_d_valid() { case_d valid; }
case_d_new() { case_d new; }
case_e_plain() { run_case e_plain "http://127.0.0.1:$PORT_E0$PAGE" 0 "$CADDY" "${H[@]}" "$VALID"; }
case_e_b2s_valid() { run_case e_b2s_valid "http://127.0.0.1:$PORT_E1$PAGE" 1 "$CADDY" "${H[@]}" "$VALID"; }
case_e_b2s_new() { run_case e_b2s_new "http://127.0.0.1:$PORT_E1$PAGE" 1 "$CADDY" "${H[@]}" "$NONE"; }
CASES=(a_valid b_respond a_new c_log b_file d_valid d_new e_plain e_b2s_valid e_b2s_new)
for ROUND in $(seq "$HTTP_ROUNDS"); do
	if [ "$ROUND" -gt 1 ]; then start_caddy "$WORK/spool"; fi
	for i in "${!CASES[@]}"; do
		"case_${CASES[$(((i + ROUND - 1) % ${#CASES[@]}))]}"
	done

	if [ "$ROUND" = 1 ] && [ "$PROFILE" != 0 ]; then
		profile beacon-valid "$A$BEACON" "${H[@]}" "$VALID"
		profile beacon-new "$A$BEACON" "${H[@]}" "$NONE"
		profile respond "http://127.0.0.1:$PORT_B$BEACON" "${H[@]}" "$VALID"
		profile page-valid "http://127.0.0.1:$PORT_E1$PAGE" "${H[@]}" "$VALID"
		profile page-plain "http://127.0.0.1:$PORT_E0$PAGE" "${H[@]}" "$VALID"
		if perf_usable; then
			# Twice each, in reverse order the second time; the report
			# adds them up.
			perf_profile beacon-valid.r1 "$A$BEACON" "${H[@]}" "$VALID"
			perf_profile respond.r1 "http://127.0.0.1:$PORT_B$BEACON" "${H[@]}" "$VALID"
			perf_profile page-valid.r1 "http://127.0.0.1:$PORT_E1$PAGE" "${H[@]}" "$VALID"
			perf_profile page-plain.r1 "http://127.0.0.1:$PORT_E0$PAGE" "${H[@]}" "$VALID"
			perf_profile page-plain.r2 "http://127.0.0.1:$PORT_E0$PAGE" "${H[@]}" "$VALID"
			perf_profile page-valid.r2 "http://127.0.0.1:$PORT_E1$PAGE" "${H[@]}" "$VALID"
			perf_profile respond.r2 "http://127.0.0.1:$PORT_B$BEACON" "${H[@]}" "$VALID"
			perf_profile beacon-valid.r2 "$A$BEACON" "${H[@]}" "$VALID"
		else
			log "perf cannot sample here: no kernel-inclusive profile (install linux-perf)"
			echo "perf record failed or perf is missing (Debian: linux-perf)" >"$R/perf-unavailable.txt"
		fi
		curl -s "http://127.0.0.1:$ADMIN/metrics" | grep '^b2s_' >"$R/http/metrics.txt" || true
	fi
	caddy_totals
	stop_pid "$CADDY"

	# The beacon without GeoIP: a fresh Caddy whose geoip placeholder is
	# empty, to show what the lookup costs.
	start_caddy "$WORK/spool-nogeo" ""
	check "$A$BEACON" "$WORK/www/b.gif" "$VALID" >/dev/null
	run_case a_valid_nogeo "$A$BEACON" 1 "$CADDY" "${H[@]}" "$VALID"
	run_case a_new_nogeo "$A$BEACON" 1 "$CADDY" "${H[@]}" "$NONE"
	caddy_totals
	stop_pid "$CADDY"

	# The controls: respond after bench_spin $SPIN of pure CPU against
	# respond alone, and the proxied page after $SPIN_PAGE against the
	# page alone, in a Caddy of their own (bin/caddy plus bench_spin), in
	# alternating order.
	start_spin
	check "http://127.0.0.1:$PORT_A$BEACON" - "$VALID" >/dev/null
	check "http://127.0.0.1:$PORT_E1$PAGE" - "$VALID" >/dev/null
	S=(s_respond "http://127.0.0.1:$PORT_B$BEACON" s_spin "http://127.0.0.1:$PORT_A$BEACON"
		s_page "http://127.0.0.1:$PORT_E0$PAGE" s_page_spin "http://127.0.0.1:$PORT_E1$PAGE")
	order=(0 2 4 6)
	[ $((ROUND % 2)) = 0 ] && order=(2 0 6 4)
	for i in "${order[@]}"; do run_case "${S[i]}" "${S[i + 1]}" 0 "$CADDY" "${H[@]}" "$VALID"; done
	stop_pid "$CADDY"
done

# The broker holds what the shippers said they shipped: counted by
# another client (franz-go), not by the product.
cat >"$R/http/totals.env" <<-EOF
	spooled_total=$TOT_SPOOLED
	shipped_total=$TOT_SHIPPED
	dropped=$TOT_DROPPED
	write_errors=$TOT_WERR
	broker_records=$("$R/bin/shipbench" -brokers "127.0.0.1:$KAFKA" -topic b2s.events -count)
EOF

# Latency at equal load: wrk's closed loop measures latency at saturation,
# where it follows throughput. Here the beacon (valid cookie) and respond
# get the same fixed rate, LAT_RATE req/s (bench/cmd/ratelat, an open loop
# that counts each request from its scheduled time), alternating, one pair
# a round.
log "latency at equal load: $LAT_RATE req/s, beacon and respond"
start_caddy "$WORK/spool-lat"
: >"$R/http/ratelat.jsonl"
for round in $(seq "$HTTP_ROUNDS"); do
	for c in a_valid b_respond; do
		if [ $c = a_valid ]; then url="$A$BEACON"; else url="http://127.0.0.1:$PORT_B$BEACON"; fi
		if ! out=$(GOMAXPROCS=1 taskset -c "$LOAD_CPU" "$R/bin/ratelat" -url "$url" -rate "$LAT_RATE" -c "$CONNS" \
			-d "$DURATION" -warmup "$WARMUP" -H "${H[0]}" -H "${H[1]}" -H "$VALID" 2>>"$R/logs/ratelat.log"); then
			fail "ratelat $c round $round failed (see $R/logs/ratelat.log)"
			continue
		fi
		echo "{\"case\":\"$c\",\"round\":$round,${out#\{}" >>"$R/http/ratelat.jsonl"
	done
done
stop_pid "$CADDY"
echo "lat_rate=$LAT_RATE" >>"$R/machine.env"
echo "http_seconds=$SECONDS" >>"$R/machine.env"
stop_pid "$NGINX_BEACON"
stop_pid "$NGINX"
stop_pid "$BROKER"

# ---------------------------------------------------------------- memory

SECONDS=0
log "memory: idle, ${OUTAGE} of beacons with the broker down, drained"
start_broker b2s.events
start_caddy "$WORK/spool-mem"
sleep 2
M=$R/memory.env
rss_env "$CADDY" rss_idle >"$M"
stop_pid "$BROKER"
# Sample RSS every second while records pile up in the spool.
(while kill -0 "$CADDY" 2>/dev/null; do
	echo "$(date +%s) $(awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s ", $2}' "/proc/$CADDY/status")"
	sleep 1
done) >"$R/memory-rss.txt" 2>/dev/null &
SAMPLER=$!
PIDS+=("$SAMPLER")
t0=$(proc_ticks "$CADDY")
echo "outage_start=$(date +%s)" >>"$M"
taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$OUTAGE" --latency -s bench/wrk.lua \
	-H "User-Agent: $UA" -H "Referer: $REFERER" -H "Cookie: $OTHER_COOKIES; b2sid=$COOKIE" "$A$BEACON" >"$R/memory-outage.wrk.txt" 2>&1 ||
	fail "memory: wrk failed"
{
	echo "outage_end=$(date +%s)"
	echo "outage_server_ticks=$(($(proc_ticks "$CADDY") - t0))"
	rss_env "$CADDY" rss_outage
	echo "hwm_outage_kib=$(hwm_kib "$CADDY")"
	echo "spooled_outage=$(metric b2s_records_spooled_total)"
	echo "shipped_outage=$(metric b2s_records_shipped_total)"
	echo "spool_bytes_outage=$(metric b2s_spool_bytes)"
	echo "degraded_outage=$(metric b2s_sink_degraded)"
	echo "dropped_outage=$(($(metric 'b2s_records_dropped_total{reason="spool_full"}') + $(metric 'b2s_records_dropped_total{reason="spool_error"}')))"
} >>"$M"
start_broker b2s.events
t0=$(proc_ticks "$CADDY")
echo "drain_s=$(wait_drain)" >>"$M"
{
	echo "drain_server_ticks=$(($(proc_ticks "$CADDY") - t0))"
	rss_env "$CADDY" rss_drained
	echo "hwm_drained_kib=$(hwm_kib "$CADDY")"
	echo "spooled_total=$(metric b2s_records_spooled_total)"
	echo "shipped_total=$(metric b2s_records_shipped_total)"
	echo "write_errors=$(metric b2s_kafka_write_errors_total)"
	echo "spool_bytes_drained=$(metric b2s_spool_bytes)"
	echo "broker_records=$("$R/bin/shipbench" -brokers "127.0.0.1:$KAFKA" -topic b2s.events -count)"
	echo "clk_tck=$CLK_TCK"
} >>"$M"
sleep 5
rss_env "$CADDY" rss_drained_5s >>"$M"
stop_pid "$SAMPLER"
stop_pid "$CADDY"
stop_pid "$BROKER"
echo "memory_seconds=$SECONDS" >>"$R/machine.env"

# -------------------------------------------------------------- shipping

SECONDS=0
: >"$R/shipbench.jsonl"
for round in $(seq "$SHIP_ROUNDS"); do
	for run in spool:snappy kafkago:snappy kgo-sync:snappy kgo-async:snappy spool:none spool:lz4 spool:zstd; do
		path=${run%%:*} codec=${run##*:}
		topic="ship.$path.$codec.$round"
		log "shipping round $round: $path, $codec, $RECORDS records"
		start_broker "$topic"
		if ! GOMAXPROCS=1 taskset -c "$SERVER_CPU" "$R/bin/shipbench" -brokers "127.0.0.1:$KAFKA" -topic "$topic" \
			-path "$path" -compression "$codec" -records "$RECORDS" -dir "$WORK/ship-spool" \
			>>"$R/shipbench.jsonl" 2>>"$R/logs/shipbench.log"; then
			fail "shipbench $path $codec failed (see $R/logs/shipbench.log)"
		fi
		rm -rf "$WORK/ship-spool"
		stop_pid "$BROKER"
	done
done

# The shipper's linger under steady traffic: records appended at
# LIVE_RATE records/s, a burst every millisecond, for LIVE_DURATION while
# the Shipper ships them, writing at once (-1ns), with 5ms (librdkafka's
# and the Java client's linger.ms) and with the default 20ms. The settings alternate within each round; shipbench generates
# rate × duration records.
: >"$R/shipbench-live.jsonl"
for round in $(seq "$SHIP_ROUNDS"); do
	for linger in -1ns 5ms 20ms; do
		topic="ship.live.$linger.$round"
		log "linger round $round: batch timeout $linger, $LIVE_RATE records/s for $LIVE_DURATION"
		start_broker "$topic"
		if ! GOMAXPROCS=1 taskset -c "$SERVER_CPU" "$R/bin/shipbench" -brokers "127.0.0.1:$KAFKA" -topic "$topic" \
			-path live -batch-timeout "$linger" -rate "$LIVE_RATE" -duration "$LIVE_DURATION" -dir "$WORK/ship-spool" \
			>>"$R/shipbench-live.jsonl" 2>>"$R/logs/shipbench.log"; then
			fail "shipbench live, batch timeout $linger, failed (see $R/logs/shipbench.log)"
		fi
		rm -rf "$WORK/ship-spool"
		stop_pid "$BROKER"
	done
done
echo "ship_seconds=$SECONDS" >>"$R/machine.env"

# ------------------------------------------------- spool append latency

log "spool append latency: $APPENDS appends, fsync 1s and never"
: >"$R/appendlat.jsonl"
for f in 1s -1ns; do
	GOMAXPROCS=1 taskset -c "$SERVER_CPU" "$R/bin/appendlat" -n "$APPENDS" -fsync "$f" -dir "$WORK/appendlat" \
		>>"$R/appendlat.jsonl" 2>>"$R/logs/appendlat.log" || fail "appendlat -fsync $f failed"
	rm -rf "$WORK/appendlat"
done

# ---------------------------------------------------------- Go benchmarks

SECONDS=0
log "go test -bench (benchtime $GOTIME)"
"$GO" test -run '^$' -bench . -benchmem -benchtime "$GOTIME" -count 1 \
	./beacon/ ./logship/ ./caddymodule/ ./geo/ >"$R/gobench.txt" 2>&1 ||
	fail "go test -bench failed (see $R/gobench.txt)"
echo "gobench_seconds=$SECONDS" >>"$R/machine.env"

# ---------------------------------------------------------------- report

"$R/bin/benchreport" -results "$R" -out "$OUT"
