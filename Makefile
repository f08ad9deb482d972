# b2s-edge: `make run` starts the demo, `make test` runs every test.
SHELL := /bin/bash
GO ?= go
BIN := bin

.PHONY: all build run test test-unit test-e2e fuzz mutate bench deps deps-run vet clean

all: build

## build: bin/caddy (Caddy + standard modules + b2s-edge) and the dev tools
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/caddy ./cmd/caddy
	$(GO) build -o $(BIN)/kbroker ./test/kbroker
	$(GO) build -o $(BIN)/demogeo ./test/demogeo

## run: the proxy on http://localhost:8080 in front of the demo site, with a local broker
run: build deps-run
	./scripts/run-demo.sh

## deps: what the tests need from the system (kcat, promtool, chromium); deps-run: what the demo needs (kcat)
deps: deps-run
	@command -v promtool >/dev/null 2>&1 || { \
		echo "installing promtool (Debian package prometheus) for the alert rule tests"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
		else echo "promtool is missing: run 'sudo apt-get install prometheus'" >&2; exit 1; fi; }
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium (Debian package) for the browser tests"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium is missing: run 'sudo apt-get install chromium'" >&2; exit 1; fi; }

deps-run:
	@command -v kcat >/dev/null 2>&1 || { \
		echo "installing kcat (Debian package) to read records back from Kafka"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq kcat >/dev/null; \
		else echo "kcat is missing: run 'sudo apt-get install kcat'" >&2; exit 1; fi; }

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

## test: every test: unit (with the race detector), fuzz seed corpora, end-to-end
test: deps vet
	$(GO) test -race -count=1 ./beacon/... ./mailink/... ./geo/... ./logship/... ./caddymodule/... ./internal/... ./cmd/... ./bench/...
	$(GO) test -count=1 ./beacon/...
	$(GO) test -count=1 -timeout 10m ./test/...

## fuzz: run each fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	@for t in FuzzVerify FuzzOpenLink FuzzNextCookie FuzzParseQuery FuzzUnescape FuzzRecordJSON FuzzClassifyBot FuzzHints FuzzParseBeacon FuzzRedact; do \
		$(GO) test ./beacon -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done
	@for t in FuzzOpen FuzzSeal FuzzParsePath; do \
		$(GO) test ./mailink -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done
	@for t in FuzzScanSegment FuzzParseEntries; do \
		$(GO) test ./logship -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done
	@for t in FuzzFilterCookies FuzzSetCookieName; do \
		$(GO) test ./caddymodule -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; done

## mutate: mutation testing of beacon/, mailink/, logship/ and caddymodule/ with gremlins (installed on first use),
## MUTATE_WORKERS at a time, each test run bounded by gremlins' timeout (MUTATE_TIMEOUT_COEFF times the
## normal run; -count=1 so that the coverage run it times mutants against is not a cached one); results in
## bench/results/mutate-PKG.json. Not part of make test: it takes hours on 2 cores.
GREMLINS_VERSION ?= v0.6.0
MUTATE_PKGS ?= beacon mailink logship caddymodule
MUTATE_WORKERS ?= 1
MUTATE_TIMEOUT_COEFF ?= 3
mutate:
	@command -v gremlins >/dev/null 2>&1 || [ -x "$$($(GO) env GOPATH)/bin/gremlins" ] || { \
		echo "installing gremlins $(GREMLINS_VERSION) (mutation testing)"; \
		$(GO) install github.com/go-gremlins/gremlins/cmd/gremlins@$(GREMLINS_VERSION); }
	@mkdir -p bench/results
	@G=$$(command -v gremlins || echo "$$($(GO) env GOPATH)/bin/gremlins"); \
	for p in $(MUTATE_PKGS); do echo "== $$p"; \
		GOFLAGS='-count=1 -vet=off -ldflags=-w' "$$G" unleash ./$$p --workers $(MUTATE_WORKERS) --timeout-coefficient $(MUTATE_TIMEOUT_COEFF) \
			--output bench/results/mutate-$$p.json -S lt || exit 1; done

## bench: load tests against bin/caddy and nginx (wrk, pinned cores), Go benchmarks, shipping to a broker
## process and memory through an outage; writes docs/benchmarks.md, raw outputs in bench/results/
BENCH_DURATION ?= 5s
BENCH_WARMUP ?= 2s
BENCH_CONNECTIONS ?= 64
BENCH_HTTP_ROUNDS ?= 4
BENCH_OUTAGE ?= 20s
BENCH_RECORDS ?= 300000
BENCH_SHIP_ROUNDS ?= 2
BENCH_GOTIME ?= 1s
BENCH_PROFILE ?= 5
bench: build
	GO=$(GO) BIN=$(BIN) BENCH_DURATION=$(BENCH_DURATION) BENCH_WARMUP=$(BENCH_WARMUP) \
	BENCH_CONNECTIONS=$(BENCH_CONNECTIONS) BENCH_HTTP_ROUNDS=$(BENCH_HTTP_ROUNDS) BENCH_OUTAGE=$(BENCH_OUTAGE) BENCH_RECORDS=$(BENCH_RECORDS) \
	BENCH_SHIP_ROUNDS=$(BENCH_SHIP_ROUNDS) BENCH_GOTIME=$(BENCH_GOTIME) BENCH_PROFILE=$(BENCH_PROFILE) \
	./bench/run.sh

clean:
	rm -rf $(BIN)
