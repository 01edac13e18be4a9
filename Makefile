# Tern's build. Everything here needs only Go; `make bench` also uses wrk,
# caddy (installed from Debian's packages when missing), and nginx, varnish
# and hitch for the cache comparison (apt-get install -y nginx-light varnish
# hitch; each one missing is reported and its comparison skipped).
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# The NVML bindings call deprecated NVML functions on purpose (older
# drivers have nothing else); keep their C warnings out of every build.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
FUZZTIME ?= 10s

.PHONY: all build run test fuzz bench guests vet fmt clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/tern ./cmd/tern

## run: start a single-node Tern (embedded hub, agent, sample app) in ./.tern
run:
	@echo "building bin/tern (the first build compiles every dependency and can take a few minutes)..."
	@$(GO) build -ldflags "$(LDFLAGS)" -o bin/tern ./cmd/tern
	@echo "starting a single-node Tern in ./.tern"
	@bin/tern up

## test: the whole suite: vet, race-enabled tests, every benchmark once
test:
	@echo "vet, then the race-enabled tests (the first run compiles every dependency)..."
	$(GO) vet ./...
	$(GO) test -race -timeout 15m ./...
	CGO_ENABLED=0 $(GO) test -timeout 5m ./gpu/...
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 10m ./...

## fuzz: every fuzz target for FUZZTIME each; a crasher found is written
## under the package's testdata/fuzz, where plain `go test` replays it
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "fuzz $$(dirname $$f) $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$(dirname $$f); \
		done; \
	done

## bench: benchmarks with results for docs/BENCHMARKS.md
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./wasmhost/ ./cache/ ./gpu/ ./carbon/... ./server/
	./scripts/bench-e2e.sh
	./scripts/bench-cache.sh
	./scripts/bench-tls.sh
	./scripts/bench-fleet.sh

## guests: rebuild the committed guest wasm modules from their sources
guests:
	$(MAKE) -C guests

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
