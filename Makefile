# Everything a developer or CI runs. `make test` is the README's test command.
GO       ?= go
BIN      ?= bin/reverb
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 30s

.PHONY: all build run test deps test-go test-e2e deps-e2e vet lint fuzz bench bench-compare bench-scale bench-scale1m bench-cluster clean

all: build

# A static binary (no cgo): it runs on any Linux of the architecture and
# maps no libc (~1.2 MiB less RSS per process).
build:
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/reverb

# Runs the server with the embedded defaults (no config file, no Redis).
run: build
	./$(BIN) start

# All tests: Go (with the race detector; the fuzz seed corpora run as tests)
# and the Node end-to-end suite with pusher-js, laravel-echo and pusher.
test: deps vet test-go test-e2e

# System packages the tests use: real redis-server, redis-sentinel and
# redis-cli (Debian's redis-tools) for the cluster tests and Debian's
# chromium for the dashboard test. Installed only when missing.
deps:
	@missing=""; \
	  command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	  command -v redis-sentinel >/dev/null || missing="$$missing redis-sentinel"; \
	  command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

test-go:
	$(GO) test -race -count=1 ./...

deps-e2e:
	@command -v node >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	cd e2e && npm ci --no-audit --no-fund

test-e2e: build deps-e2e
	cd e2e && REVERB_BIN=$(CURDIR)/$(BIN) npm test

lint:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# Runs every fuzz target for FUZZTIME each.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./wsproto ./pusher

# Side-by-side run against Soketi (installed from npm into /tmp); see bench/RESULTS.md.
bench-compare:
	bash bench/compare.sh

# 100k connections over 6 reuse_port processes and Redis; see bench/RESULTS.md.
bench-scale:
	bash bench/scale100k.sh

# 1,000,000 connections over 55 reuse_port processes and Redis (about 10 minutes).
bench-scale1m:
	bash bench/scale1m.sh

bench-cluster:
	bash bench/compare-cluster.sh

clean:
	rm -rf bin
