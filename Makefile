# Postroom's entry points. On a fresh Debian machine `make run` or `make test`
# is all a user types: missing packages are installed first (with sudo when
# not root), then the app is built and run, or every check CI runs is run.
#
#   make run        build the desktop app to ./postroom and start it (ARGS="--data DIR" passes flags)
#   make test       gofmt, go vet, staticcheck, go test -race, the pure-Go headless variant, then the window under Xvfb
#   make build      build ./postroom (cgo, window + tray)
#   make build-headless   build ./postroom-headless (CGO_ENABLED=0, no window)
#   make fuzz       run every Fuzz* target for FUZZTIME each (default 30s)
#   make bench      storage benchmarks, then a load run (msg/s, CPU per message, peak RSS)
#   make clean      remove what the targets above built

GO ?= go
FUZZTIME ?= 30s
ARGS ?=
# Packages `make test` checks; narrow it while working on one part, e.g.
# make test PKGS=./engine/...
PKGS ?= ./...

# FyneApp.toml sets [Migrations] fyneDo = true; a plain `go build` learns that
# only from this tag. -tags given twice means the last one wins, so each
# variant spells out its whole tag list once.
TAGS := migrated_fynedo
HEADLESS_TAGS := $(TAGS),headless

# Keep GOFLAGS the user (or `go env -w`) already set, adding our tags after
# them so ours win. An exported GOFLAGS replaces the go env file's, hence the
# lookup rather than $(GOFLAGS).
BASE_GOFLAGS := $(shell $(GO) env GOFLAGS 2>/dev/null)
export GOFLAGS := $(strip $(BASE_GOFLAGS) -tags=$(TAGS))
HEADLESS_ENV := CGO_ENABLED=0 GOFLAGS="$(strip $(BASE_GOFLAGS) -tags=$(HEADLESS_TAGS))"

# cgo, X11 and OpenGL headers for Fyne's GLFW driver (the set Fyne documents
# for Debian), plus libc6-dev, which gcc only recommends.
BUILD_DEPS := gcc libc6-dev pkg-config libgl1-mesa-dev xorg-dev
# Xvfb, xauth, x11-utils (xwininfo) and imagemagick (import) for the
# screenshot smoke test, with Mesa's software OpenGL (libgl1-mesa-dri) for
# the window; dbus (dbus-run-session) for the tray menu check's
# private session bus; python3-dkim verifies our DKIM signatures
# independently; swaks is a reference SMTP client.
TEST_DEPS := xvfb xauth x11-utils imagemagick libgl1-mesa-dri dbus python3-dkim swaks

# staticcheck 2026.2.2 is Go module version v0.8.2; install by the module
# version, which every proxy resolves (the release-name query is refused by
# some module proxies), and check the release name the binary reports.
STATICCHECK_VERSION := 2026.2.2
STATICCHECK_MODULE_VERSION := v0.8.2
# Where `go install` puts binaries: the first GOPATH entry's bin. Evaluated
# lazily so a missing Go is reported by the deps step, not by make itself.
GOBIN_DIR = $(firstword $(subst :, ,$(shell $(GO) env GOPATH)))/bin
STATICCHECK = $(GOBIN_DIR)/staticcheck

.PHONY: all run test build build-headless fuzz bench clean deps test-deps staticcheck-install

all: build

deps:
	@.ci/deps.sh "build dependencies" $(BUILD_DEPS)

test-deps: deps
	@.ci/deps.sh "test tools" $(TEST_DEPS)

staticcheck-install: deps
	@if ! "$(STATICCHECK)" -version 2>/dev/null | grep -qF "staticcheck $(STATICCHECK_VERSION) ($(STATICCHECK_MODULE_VERSION:v%=%))"; then \
		echo "Installing staticcheck $(STATICCHECK_VERSION) into $(GOBIN_DIR)"; \
		GOBIN="$(GOBIN_DIR)" $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_MODULE_VERSION); \
	fi

build: deps
	$(GO) build -o postroom .

build-headless: deps
	$(HEADLESS_ENV) $(GO) build -o postroom-headless .

run: build
	@if [ -z "$$DISPLAY" ]; then \
		echo "make run: DISPLAY is not set, so there is no screen to open the Postroom window on." >&2; \
		echo "Run it from a desktop session, or run the relay without a window: ./postroom serve" >&2; \
		exit 1; \
	fi
	./postroom $(ARGS)

# One recipe, in order, stopping at the first failure (make runs the lines
# one by one and stops when one fails, even under -j).
test: test-deps staticcheck-install
	@echo "==> gofmt -s"
	@unformatted=$$(gofmt -s -l $(patsubst %/...,%,$(PKGS))); \
	if [ -n "$$unformatted" ]; then \
		echo "These files are not gofmt -s formatted (run gofmt -s -w on them):" >&2; \
		echo "$$unformatted" >&2; \
		exit 1; \
	fi
	@echo "==> go vet"
	$(GO) vet $(PKGS)
	@echo "==> staticcheck"
	"$(STATICCHECK)" -tags $(TAGS) $(PKGS)
	@echo "==> go test -race"
	$(GO) test -race $(PKGS)
	@echo "==> headless (CGO_ENABLED=0 -tags $(HEADLESS_TAGS))"
	$(HEADLESS_ENV) $(GO) vet $(PKGS)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		echo "go build -tags $(HEADLESS_TAGS) -o $$tmp/postroom-headless . (CGO_ENABLED=0)" && \
		$(HEADLESS_ENV) $(GO) build -o "$$tmp/postroom-headless" .
	$(HEADLESS_ENV) $(GO) test $(PKGS)
	@echo "==> desktop smoke test under Xvfb (window, then the tray menu over D-Bus)"
	@GO=$(GO) PKGS="$(PKGS)" .ci/smoke.sh
	@echo "==> all checks passed"

fuzz: deps
	@FUZZTIME=$(FUZZTIME) GO=$(GO) .ci/fuzz.sh

# Not part of `make test`: timings never decide pass or fail. The load run
# needs smtp-source and smtp-sink (Debian's postfix package; bench/load.sh
# says how to install them without configuring a mail system). BENCHTIME
# bounds each Go benchmark; RUNS, SIZE, N, CONC and DKIM go to the load run.
# bench/compare.sh measures against Postfix side by side (as root).
BENCHTIME ?= 2s
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./storage/...
	GO=$(GO) bench/load.sh

clean:
	rm -f postroom postroom-headless
