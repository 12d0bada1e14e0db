# sv2kit — the README's two commands are `make demo` and `make test`.
GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 30s
BENCHTIME ?= 1s
BIN       := bin
BINARIES  := tp jdc jds sv2-keygen sv2-pool sv2-cpuminer

export GOFLAGS := -buildvcs=false

.PHONY: all build test test-short bench fuzz lint deps btcd demo clean

all: build

# System packages the build needs (libzmq for pebbe/zmq4); no-op when present.
deps:
	@./.ci/deps.sh

build: deps
	@mkdir -p $(BIN)
	@for b in $(BINARIES); do \
		if [ -d cmd/$$b ]; then $(GO) build -o $(BIN)/$$b ./cmd/$$b || exit 1; fi; \
	done

# The real Bitcoin node the tests run against (btcd, built from the module cache
# at the version go.mod pins). Built once here so test timeouts never include it.
btcd:
	@if [ -d internal/regtest/cmd/buildbtcd ]; then $(GO) run ./internal/regtest/cmd/buildbtcd; fi

# vet + every test, the fuzz seed corpora included (they run as ordinary tests).
test: deps btcd
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 15m $(PKGS)

test-short: deps
	$(GO) test -short -count=1 $(PKGS)

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

# Runs every fuzz target for FUZZTIME each.
fuzz: deps
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

demo: build btcd
	@if [ -d cmd/sv2demo ]; then $(GO) run ./cmd/sv2demo $(if $(BLOCKS),-blocks $(BLOCKS)); \
	else echo "make demo: the regtest network runner (cmd/sv2demo) is not built yet (issue 5)"; exit 1; fi

clean:
	rm -rf $(BIN)
