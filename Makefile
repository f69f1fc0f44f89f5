# lua-resty-acme-rs — build, test and demo entry points.
#
#   make deps        install Debian packages the build and the tests need (idempotent)
#   make build       cargo build --release
#   make lua-build   build + lay out build/lua/resty/acme/core.so for lua_package_cpath
#   make check       fmt, clippy, luacheck, cargo test (no servers)
#   make e2e         pytest end-to-end suites under t/ on one platform (Debian's nginx, or
#                    OPENRESTY=<prefix>)
#   make e2e-openresty  the same suites on OpenResty: OPENRESTY=<prefix>, or one built from
#                    ../shared/openresty into a cache (scripts/build-openresty.sh); skipped,
#                    saying so, where neither exists
#   make e2e-both    e2e on Debian's nginx, then e2e-openresty without the platform_independent
#                    tests (E2E_PARALLEL=1: both at the same time, the OpenResty log after)
#   make test        deps + check + e2e-both (what CI runs)
#   make demo        scripts/demo.sh: Pebble + nginx + autossl, prints the issuer
#                    (OPENRESTY=<prefix> runs it on OpenResty)
#   make bench       every figure of docs/BENCHMARKS.md (P1..P12, about 15 minutes)
#   make rock        luarocks make (installs into the default /usr/local tree)
#
# Variables: OPENRESTY (an OpenResty prefix: the platform for e2e, demo, bench; empty = Debian's
# nginx 1.22 with libnginx-mod-http-lua), PYTHON (Debian's python3 with pytest + cryptography), CARGO, LUAROCKS,
# PYTEST_ARGS (extra pytest arguments, e.g. PYTEST_ARGS="-k load -x"),
# PLATFORM_BOUND_ONLY=1 (e2e: deselect the tests marked platform_independent, which run no
# nginx; e2e-both sets it for OpenResty), E2E_JOBS (tests at once per platform, default 2;
# needs pytest-xdist), E2E_PARALLEL=1 (e2e-both: both platforms at once),
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
PLATFORM_BOUND_ONLY ?=
E2E_PARALLEL ?=
E2E_JOBS ?= 2
BENCH_ARGS ?=
OPENRESTY ?=

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

.PHONY: all deps build lua-build check fmt clippy luacheck cargo-test e2e e2e-debian \
        e2e-openresty e2e-both openresty test demo bench rock rock-build rock-install openresty-install \
        openresty-uninstall clean

all: lua-build

deps:
	@scripts/install-deps.sh

build:
	$(CARGO) build --release

lua-build: build
	@mkdir -p $(dir $(CORE_SO))
	@# copy then rename: a running nginx keeps its mapping of the old file intact (a temporary
	@# name of this shell's own: the two platform runs of e2e-both may both get here)
	@install -m 0755 $(CORE_LIB) $(CORE_SO).tmp.$$$$ && mv -f $(CORE_SO).tmp.$$$$ $(CORE_SO)
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
# E2E_JOBS tests run at once (pytest-xdist, python3-pytest-xdist; 1 or no xdist: one at a
# time). A test mostly waits on Pebble, timers and renewal windows, so two at a time on two
# cores take about 60 % of the time of one; each starts its own servers on free ports.
# Pebble 2.10.1 (ARI, profiles) is built once from ../shared/pebble into a cache; where that
# source is absent (exit 3) the tests that need it are skipped, a failed build fails the run.
define run_pytest
	@cd $(REPO) && echo "e2e: platform $(if $(1),OpenResty at $(1),Debian nginx)" && \
		{ PEBBLE2_BIN=$$(scripts/build-pebble.sh); rc=$$?; \
		if [ $$rc -eq 3 ]; then PEBBLE2_BIN=; elif [ $$rc -ne 0 ]; then \
			echo "e2e: the Pebble 2.10.1 build failed"; exit 1; fi; export PEBBLE2_BIN; \
		$(if $(PLATFORM_BOUND_ONLY),echo "e2e: tests marked platform_independent deselected (they ran on the first platform)";) \
		jobs=; if [ "$(E2E_JOBS)" != 1 ] && $(PYTHON) -c "import xdist" 2>/dev/null; then \
			jobs="-n $(E2E_JOBS)"; fi; \
		OPENRESTY="$(1)" $(PYTHON) -m pytest -v -p no:cacheprovider --durations=25 $$jobs t/ \
			$(if $(PLATFORM_BOUND_ONLY),-m "not platform_independent") $(PYTEST_ARGS); rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (exit 5), not a failure"; rc=0; fi; \
		exit $$rc; }
endef

# one platform: OPENRESTY=<prefix> if given, else Debian's nginx
e2e: lua-build
	$(call run_pytest,$(OPENRESTY))

e2e-debian: lua-build
	$(call run_pytest,)

# prints the prefix of an OpenResty built from ../shared/openresty (cached)
openresty:
	@scripts/build-openresty.sh

e2e-openresty: lua-build
	@prefix="$(OPENRESTY)"; \
	if [ -z "$$prefix" ]; then \
		prefix=$$(scripts/build-openresty.sh); rc=$$?; \
		if [ $$rc -eq 3 ]; then \
			echo "e2e-openresty: SKIPPED: no OpenResty here (neither OPENRESTY=<prefix> nor"; \
			echo "  ../shared/openresty). Run it with: make e2e OPENRESTY=/usr/local/openresty"; \
			exit 0; \
		fi; \
		[ $$rc -eq 0 ] || exit $$rc; \
	fi; \
	$(MAKE) --no-print-directory e2e OPENRESTY="$$prefix"

# Both platforms run even when one fails, so one CI log shows both; the tests that run no nginx
# (marked platform_independent) run on Debian only. One after the other by default: a run keeps
# only about a fifth of a core busy (it mostly waits on timers and windows), but RSA work waits
# for the machine-wide slot (src/cpu_slot.rs), so two runs at once delay each other's RSA keys;
# measured with other suites beside it, an RSA account key took 74 s and issuance tests timed
# out. E2E_PARALLEL=1 overlaps them where RSA work is rare. Pebble and OpenResty are built (or
# found in their caches) first, so two runs never build them at once.
e2e-both: lua-build
	@# a failed build is reported by the run that needs it
	@scripts/build-pebble.sh >/dev/null || true
	@$(MAKE) --no-print-directory openresty >/dev/null 2>&1 || true
	@rc=0; \
	if [ -z "$(E2E_PARALLEL)" ]; then \
		$(MAKE) --no-print-directory e2e-debian || rc=1; \
		$(MAKE) --no-print-directory e2e-openresty PLATFORM_BOUND_ONLY=1 || rc=1; \
	else \
		out=$$(mktemp); \
		$(MAKE) --no-print-directory e2e-openresty PLATFORM_BOUND_ONLY=1 >"$$out" 2>&1 & pid=$$!; \
		$(MAKE) --no-print-directory e2e-debian || rc=1; \
		wait $$pid || rc=1; \
		echo "===== e2e-openresty (ran beside e2e-debian) ====="; cat "$$out"; rm -f "$$out"; \
	fi; \
	if [ $$rc -ne 0 ]; then echo "e2e-both: FAILED (see the runs above)"; fi; \
	exit $$rc

test: deps
	$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory e2e-both || { echo "make test: FAILED (see the e2e runs above)"; exit 1; }

demo:
	@OPENRESTY="$(OPENRESTY)" scripts/demo.sh

# Prints one `NAME VALUE` line per figure at the end and writes bench/results/latest.json.
bench: deps lua-build
	$(CARGO) build --release --example crypto_bench
	@cd $(REPO) && OPENRESTY="$(OPENRESTY)" $(PYTHON) bench/run.py $(BENCH_ARGS)

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

# luarocks with one tree: an OpenResty prefix's site/lualib for both Lua files and core.so, which
# OpenResty's default package.path and cpath search (no lua_package_path/cpath line needed).
define openresty_luarocks
	@[ -n "$(OPENRESTY)" ] || { echo "usage: make $@ OPENRESTY=/usr/local/openresty" >&2; exit 2; }
	@cfg=$$(mktemp) && \
	printf 'rocks_trees = { { name = "openresty", root = "%s", lua_dir = "%s", lib_dir = "%s" } }\n' \
		"$(OPENRESTY)/site" "$(OPENRESTY)/site/lualib" "$(OPENRESTY)/site/lualib" >"$$cfg" && \
	LUAROCKS_CONFIG="$$cfg" $(LUAROCKS) --lua-version=$(LUA_VERSION) --tree=openresty $(1); \
	rc=$$?; rm -f "$$cfg"; exit $$rc
endef

openresty-install:
	$(call openresty_luarocks,make rockspec/lua-resty-acme-rs-0.1.0-1.rockspec --deps-mode=none)

openresty-uninstall:
	$(call openresty_luarocks,remove lua-resty-acme-rs)

clean:
	$(CARGO) clean
	rm -rf build
