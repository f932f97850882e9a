# sealgate build and test entry points. `make test` is what CI runs (see .ci/run).
GO        ?= go
BIN       ?= bin/sealgate
# Fuzz budget per target. A count (N executions), not a duration: with -fuzztime 10s Go's
# coordinator can race its own deadline on a loaded machine and fail with a bare "context
# deadline exceeded" and no failing input (golang/go#51484, #75804). FUZZTIME=1m still works.
FUZZTIME  ?= 300000x
PKGS      := ./...

.PHONY: all build test have-deps unit interop fuzz bench bench-load lint deps clean run-dev

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sealgate

# Everything a change must pass: lint, unit and integration tests (the integration and
# interoperability tests run the real binary against dkimpy, Mail::DKIM and swaks and
# fail, not skip, when CI=true and those tools are missing), then short fuzz runs.
test: have-deps lint unit fuzz

# Installs the Debian packages below when one is missing (needs root or sudo).
have-deps:
	@if ! /usr/bin/python3 -c 'import dkim, dns, authres' 2>/dev/null || ! perl -MMail::DKIM::ARC::Verifier -MNet::DNS -e1 2>/dev/null || ! command -v swaks >/dev/null; then \
	  echo "installing test dependencies (python3-dkim, libmail-dkim-perl, swaks) with apt-get"; \
	  if [ "$$(id -u)" = 0 ]; then $(MAKE) deps; else sudo $(MAKE) deps; fi; \
	fi

unit:
	$(GO) test -count=1 $(PKGS)

# Short runs of every fuzz target; the seed corpora live in testdata/fuzz.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzRelaxedBody$$' -fuzztime=$(FUZZTIME) ./internal/dkimcore
	$(GO) test -run='^$$' -fuzz='^FuzzReadHeader$$' -fuzztime=$(FUZZTIME) ./internal/dkimcore
	$(GO) test -run='^$$' -fuzz='^FuzzParseTags$$' -fuzztime=$(FUZZTIME) ./internal/dkimcore
	$(GO) test -run='^$$' -fuzz='^FuzzParseKeyRecord$$' -fuzztime=$(FUZZTIME) ./internal/dkimcore
	$(GO) test -run='^$$' -fuzz='^FuzzValidate$$' -fuzztime=$(FUZZTIME) ./arc
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./internal/authres
	$(GO) test -run='^$$' -fuzz='^FuzzParseHeaderMailboxes$$' -fuzztime=$(FUZZTIME) ./internal/addr
	$(GO) test -run='^$$' -fuzz='^FuzzParsePath$$' -fuzztime=$(FUZZTIME) ./internal/addr

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./internal/dkimcore ./sign ./arc

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Debian packages the interoperability and integration tests use.
deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	  python3 python3-dkim python3-authres python3-dnspython libmail-dkim-perl libnet-dns-perl swaks

# Load benchmark: the real relay (dev mode, durable spool) with an in-process next-hop sink,
# STARTTLS+AUTH and smart-host clients, 2 KB and 50 KB messages. E.g. LOAD_FLAGS='-c 32 -duration 60s'.
LOAD_FLAGS ?= -duration 20s
bench-load: build
	$(GO) run ./internal/loadbench -sealgate $(BIN) $(LOAD_FLAGS)

run-dev: build
	$(BIN) serve --dev

clean:
	rm -rf bin
