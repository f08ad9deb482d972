// Package ops tests what operators deploy beside the binary: the Prometheus
// alert rules in configs/prometheus, the production example in
// configs/production (Caddyfile, systemd unit, environment file), the
// formatting of every Caddyfile in the repository, and the build of the
// plugin with xcaddy as Caddy users make it.
//
// The tests run real tools: the caddy binary built from this checkout,
// promtool (Debian's prometheus package: `apt-get install prometheus`, or
// `make deps`), systemd-analyze when the machine has it, and xcaddy, which
// the xcaddy test installs from the Go module proxy. That test builds Caddy
// from scratch and takes a minute or two; -short skips it.
package ops
