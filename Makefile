# lua-resty-acme-rs — build, test and demo entry points.
#
#   make deps        install Debian packages the build and the tests need (idempotent)
#   make build       cargo build --release
#   make lua-build   build + lay out build/lua/resty/acme/core.so for lua_package_cpath
#   make check       fmt, clippy, luacheck, cargo test (no servers)
#   make e2e         pytest end-to-end suites under t/ (nginx, pebble, ...)
#   make test        deps + check + release build + e2e (what CI runs)
#   make demo        scripts/demo.sh: Pebble + nginx + autossl, prints the issuer
#   make bench       every figure of docs/BENCHMARKS.md (P1..P9, about 9 minutes)
#   make rock        luarocks make (installs into the default /usr/local tree)
#
# Variables: PYTHON (Debian's python3 with pytest + cryptography), CARGO, LUAROCKS,
# PYTEST_ARGS (extra pytest arguments, e.g. PYTEST_ARGS="-k load -x"),
# BENCH_ARGS (e.g. BENCH_ARGS="--only P1,P6 --quick").

SHELL := /bin/bash

# cargo from rustup lives in ~/.cargo/bin, which a non-login shell may not have on PATH.
ifeq ($(shell command -v cargo 2>/dev/null),)
ifneq ($(wildcard $(HOME)/.cargo/bin/cargo),)
export PATH := $(HOME)/.cargo/bin:$(PATH)
endif
endif

CARGO ?= cargo
PYTHON ?= /usr/bin/python3
LUAROCKS ?= luarocks
PYTEST_ARGS ?=
BENCH_ARGS ?=

REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),$(REPO)/target))
CORE_LIB := $(TARGET_DIR)/release/libresty_acme_core.so
BUILD_LUA := $(REPO)/build/lua
CORE_SO := $(BUILD_LUA)/resty/acme/core.so

# luarocks "make" build type passes these (see rockspec/); defaults for a manual install.
LUA_VERSION ?= 5.1
PREFIX ?= /usr/local
LUADIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)

.PHONY: all deps build lua-build check fmt clippy luacheck cargo-test e2e test demo bench rock \
        rock-build rock-install clean

all: lua-build

deps:
	@scripts/install-deps.sh

build:
	$(CARGO) build --release

lua-build: build
	@mkdir -p $(dir $(CORE_SO))
	@# copy then rename: a running nginx keeps its mapping of the old file intact
	@install -m 0755 $(CORE_LIB) $(CORE_SO).tmp && mv -f $(CORE_SO).tmp $(CORE_SO)
	@echo "lua-build: $(CORE_SO) (copy of $(CORE_LIB))"

fmt:
	$(CARGO) fmt --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

luacheck:
	@if [ -n "$$(find lua -name '*.lua' 2>/dev/null | head -n1)" ]; then \
		luacheck lua/; \
	else \
		echo "luacheck: no Lua files under lua/ yet, skipped"; \
	fi

cargo-test:
	$(CARGO) test

check: fmt clippy luacheck cargo-test

# pytest exits 5 when it collected no tests; that is not a failure of the run.
# Pebble 2.10.1 (ARI, profiles) is built once from ../shared/pebble into a cache; absent, the
# tests that need it are skipped.
e2e: lua-build
	@cd $(REPO) && { PEBBLE2_BIN=$$(scripts/build-pebble.sh 2>/dev/null || true); export PEBBLE2_BIN; \
		$(PYTHON) -m pytest -v -p no:cacheprovider t/ $(PYTEST_ARGS); rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (exit 5), not a failure"; rc=0; fi; \
		exit $$rc; }

test: deps
	$(MAKE) --no-print-directory check
	$(MAKE) --no-print-directory e2e

demo:
	@scripts/demo.sh

# Prints one `NAME VALUE` line per figure at the end and writes bench/results/latest.json.
bench: deps lua-build
	$(CARGO) build --release --example crypto_bench
	@cd $(REPO) && $(PYTHON) bench/run.py $(BENCH_ARGS)

# --- luarocks (rockspec/lua-resty-acme-rs-*.rockspec, build.type = "make") -------------

rock:
	$(LUAROCKS) --lua-version=$(LUA_VERSION) make rockspec/lua-resty-acme-rs-0.1.0-1.rockspec

# luarocks passes CC=gcc (and may pass CFLAGS/LIBFLAG) on the make command line; keep them
# out of cargo's environment, or build scripts (cc, openssl-sys) see a changed environment and
# the crate graph is rebuilt on every switch between `make lua-build` and `luarocks make`.
rock-build: build
unexport CC CFLAGS LIBFLAG

rock-install:
	install -d $(LIBDIR)/resty/acme
	install -m 0755 $(CORE_LIB) $(LIBDIR)/resty/acme/core.so
	@if [ -d lua ]; then cd lua && find . -name '*.lua' | sort | while read -r f; do \
		install -D -m 0644 "$$f" "$(LUADIR)/$${f#./}" || exit 1; \
		echo "installed $(LUADIR)/$${f#./}"; \
	done; fi

clean:
	$(CARGO) clean
	rm -rf build
