#!/usr/bin/env bash
# Starts the b2s-edge demo: a local Kafka-protocol broker on 127.0.0.1:9092,
# demo GeoIP databases (City, ASN, Anonymous IP), and bin/caddy running the
# root Caddyfile (the edge on http://localhost:8080 in front of the demo
# site). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

state=bin/demo
mkdir -p "$state"
# A stable secret, so visitors keep their cookie across demo runs.
if [ -z "${B2S_SECRET:-}" ]; then
	[ -s "$state/secret" ] || head -c 48 /dev/urandom | base64 -w0 >"$state/secret"
	B2S_SECRET=$(cat "$state/secret")
fi
export B2S_SECRET
export B2S_GEOIP="${B2S_GEOIP:-$PWD/$state/demo-city.mmdb}"
export B2S_GEOIP_ASN="${B2S_GEOIP_ASN:-$PWD/$state/demo-asn.mmdb}"
export B2S_GEOIP_ANONYMOUS="${B2S_GEOIP_ANONYMOUS:-$PWD/$state/demo-anonymous.mmdb}"
if [ ! -s "$B2S_GEOIP" ] || [ ! -s "$B2S_GEOIP_ASN" ] || [ ! -s "$B2S_GEOIP_ANONYMOUS" ]; then
	bin/demogeo -o "$B2S_GEOIP" -asn "$B2S_GEOIP_ASN" -anonymous "$B2S_GEOIP_ANONYMOUS"
fi

for port in 9092 8080 8081 2019; do
	if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
		echo "port $port is already in use; stop what is listening there (ss -ltnp 'sport = :$port')" >&2
		exit 1
	fi
done

pids=()
cleanup() {
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

bin/kbroker -addr 127.0.0.1:9092 -topic b2s.events -partitions 3 &
pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && break; sleep 0.1; done

cat <<MSG

  b2s-edge demo
  -------------
  site:     http://localhost:8080          (the edge, in front of configs/demo on :8081)
  beacon:   http://localhost:8080/b.gif?e=test
  health:   curl -s localhost:8080/healthz
  metrics:  curl -s localhost:2019/metrics | grep ^b2s_
  records:  kcat -b 127.0.0.1:9092 -t b2s.events -C -o beginning -f '%k %s\n'

  Open the site, click around, and watch the records arrive. Ctrl-C stops everything.

MSG

bin/caddy run --config Caddyfile --adapter caddyfile &
pids+=($!)
wait -n "${pids[@]}"
