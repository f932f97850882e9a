# sealgate build and test entry points. `make test` is what CI runs (see .ci/run).
GO        ?= go
BIN       ?= bin/sealgate
# Fuzz budget per target. A count (N executions), not a duration: with -fuzztime 10s Go's
# coordinator can race its own deadline on a loaded machine and fail with a bare "context
# deadline exceeded" and no failing input (golang/go#51484, #75804). FUZZTIME=1m still works.
FUZZTIME  ?= 300000x
PKGS      := ./...
# RSA signatures go through the system's libcrypto (internal/libcrypto, build tag openssl) when
# cgo works and OpenSSL 3's development files are present (Debian: libssl-dev, pkg-config),
# through Go's crypto/rsa otherwise. OPENSSL=0 forces crypto/rsa; OPENSSL=1 insists on libcrypto.
ifndef OPENSSL
OPENSSL := $(shell [ "$$($(GO) env CGO_ENABLED 2>/dev/null)" = 1 ] && pkg-config --exists 'libcrypto >= 3' 2>/dev/null && echo 1 || echo 0)
endif
ifeq ($(OPENSSL),1)
GOTAGS    := -tags=openssl
SIGNER    := libcrypto (OpenSSL $(shell pkg-config --modversion libcrypto 2>/dev/null), -tags openssl)
else
GOTAGS    :=
SIGNER    := Go's crypto/rsa (for libcrypto: cgo with a C compiler, and apt-get install libssl-dev pkg-config)
endif
# The RSA sign fuzz target runs crypto/rsa and libcrypto per input: a smaller budget.
FUZZTIME_RSA ?= 2000x
# verify: the record parsers are cheap; FuzzVerify runs a whole receiver (DNS from a zone,
# DKIM, ARC, DMARC twice) per input: smaller budgets, so `make fuzz` stays within minutes.
FUZZTIME_VERIFY_PARSERS ?= 100000x
FUZZTIME_VERIFY   ?= 20000x

.PHONY: all build test have-deps have-libcrypto unit interop fuzz bench bench-load lint deps clean run-dev

all: build

build: have-libcrypto
	$(GO) build -buildvcs=true $(GOTAGS) -o $(BIN) ./cmd/sealgate
	@echo "built $(BIN): RSA signs through $(SIGNER)"

# With OPENSSL=1 (as CI runs), fail rather than quietly build Go's crypto/rsa instead.
have-libcrypto:
ifeq ($(OPENSSL),1)
	@[ "$$($(GO) env CGO_ENABLED)" = 1 ] || { echo "OPENSSL=1 needs cgo: install a C compiler (gcc) and leave CGO_ENABLED unset"; exit 1; }
	@pkg-config --exists 'libcrypto >= 3' || { echo "OPENSSL=1 needs OpenSSL 3's development files: apt-get install libssl-dev pkg-config"; exit 1; }
endif

# Everything a change must pass: lint, unit and integration tests (the integration and
# interoperability tests run the real binary against dkimpy, Mail::DKIM and swaks and
# fail, not skip, when CI=true and those tools are missing), then short fuzz runs.
test: have-deps lint unit fuzz

# Installs the Debian packages below when one is missing (needs root or sudo).
have-deps:
	@if ! /usr/bin/python3 -c 'import dkim, dns, authres, spf' 2>/dev/null || ! perl -MMail::DKIM::ARC::Verifier -MNet::DNS -MMail::DMARC::PurePerl -MMail::SRS -e1 2>/dev/null || ! command -v swaks >/dev/null || ! command -v haproxy >/dev/null || ! command -v redis-server >/dev/null || ! [ -x /usr/sbin/unbound ] || ! [ -x /usr/sbin/nsd ] || ! command -v ldns-signzone >/dev/null; then \
	  echo "installing test dependencies (python3-dkim, python3-spf, libmail-dkim-perl, libmail-dmarc-perl, libmail-srs-perl, swaks, haproxy, redis-server, unbound, nsd, ldnsutils) with apt-get"; \
	  if [ "$$(id -u)" = 0 ]; then $(MAKE) deps; else sudo $(MAKE) deps; fi; \
	fi

# With libcrypto, every test runs against it: GOFLAGS carries the tag to the binaries the
# integration tests build. The packages whose code differs without it run once more so.
unit: have-libcrypto
	@echo "unit tests: RSA signs through $(SIGNER)"
	GOFLAGS='$(strip $(GOFLAGS) $(GOTAGS))' $(GO) test -count=1 $(PKGS)
ifeq ($(OPENSSL),1)
	$(GO) test -count=1 ./internal/libcrypto ./keys
endif

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
	$(GO) test -run='^$$' -fuzz='^FuzzParseDomain$$' -fuzztime=$(FUZZTIME) ./internal/addr
	$(GO) test -run='^$$' -fuzz='^FuzzParseDMARCRecord$$' -fuzztime=$(FUZZTIME_VERIFY_PARSERS) ./verify
	$(GO) test -run='^$$' -fuzz='^FuzzSPFSyntax$$' -fuzztime=$(FUZZTIME_VERIFY_PARSERS) ./verify
	$(GO) test -run='^$$' -fuzz='^FuzzVerify$$' -fuzztime=$(FUZZTIME_VERIFY) ./verify
	$(GO) test -run='^$$' -fuzz='^FuzzImportBytes$$' -fuzztime=$(FUZZTIME) ./internal/dmarcreport
ifeq ($(OPENSSL),1)
	$(GO) test $(GOTAGS) -run='^$$' -fuzz='^FuzzSignatureEqualsCryptoRSA$$' -fuzztime=$(FUZZTIME_RSA) ./internal/libcrypto
endif

bench:
	$(GO) test $(GOTAGS) -run='^$$' -bench=. -benchmem ./internal/dkimcore ./sign ./arc ./internal/libcrypto

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
ifeq ($(OPENSSL),1)
	$(GO) vet $(GOTAGS) ./internal/libcrypto
endif

# Debian packages the interoperability and integration tests use (haproxy and
# redis-server for the several-node test, TestScaleOut; unbound, nsd and ldnsutils for
# DANE against real DNSSEC, relay's TestTransportDANEUnbound), and what the libcrypto
# signer builds with (a C compiler for cgo, OpenSSL 3's headers, pkg-config to find them).
deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	  python3 python3-dkim python3-authres python3-dnspython libmail-dkim-perl libnet-dns-perl swaks \
	  python3-spf libmail-dmarc-perl libmail-srs-perl \
	  haproxy redis-server \
	  unbound nsd ldnsutils \
	  gcc libc6-dev libssl-dev pkg-config

# Load benchmark: the real relay (dev mode, durable spool) with an in-process next-hop sink,
# STARTTLS+AUTH and smart-host clients, 2 KB and 50 KB messages. E.g. LOAD_FLAGS='-c 32 -duration 60s'.
# LOAD_FLAGS='-scaleout' compares one node direct, one and two nodes behind haproxy with Redis.
LOAD_FLAGS ?= -duration 20s
bench-load: build
	$(GO) run ./internal/loadbench -sealgate $(BIN) $(LOAD_FLAGS)

run-dev: build
	$(BIN) serve --dev

clean:
	rm -rf bin
