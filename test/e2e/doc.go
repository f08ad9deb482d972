// Package e2e holds the end-to-end tests of b2s-edge: they build the Caddy
// binary with the plugin and the test broker, run them as real processes
// over TCP in front of a real upstream, and read every record back from
// the broker with kcat, a client that shares no code with the product.
// Nothing is mocked. The fault tests (fault_test.go) stop, kill and reload
// those processes under load and damage the spool, then account for every
// beacon answered 200. Run them with `go test ./test/e2e/`; they need kcat
// (`apt-get install kcat`, or `make deps`).
package e2e
