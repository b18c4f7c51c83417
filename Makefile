# fwscan: the two quick-start commands are `make demo` and `make test`.
# Both create .venv, install fwscan with its development tools, and install (as root, with
# apt-get) the Debian tools the synthesizer and the tests use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out/demo
# Debian packages: e2fsprogs (mke2fs, e2fsck, debugfs), dexdump (DEX cross-check),
# xz-utils/zstd/bzip2 (payload cross-checks), binutils/file (ELF cross-checks), openssl (APK
# signature cross-check), time (benchmarks' peak memory), apksigner and a JDK (jarsigner) to
# verify our APK and JAR signatures independently, erofs-utils (mkfs.erofs, fsck.erofs),
# android-sdk-libsparse-utils (img2simg, simg2img), brotli/lz4/cpio (archive and block-OTA
# test inputs), chromium and chromium-driver (the HTML reports are tested in a real browser).
APT_PACKAGES := e2fsprogs dexdump xz-utils zstd bzip2 binutils file openssl time \
                apksigner openjdk-17-jdk-headless erofs-utils android-sdk-libsparse-utils \
                brotli lz4 cpio chromium chromium-driver

.PHONY: setup system-deps tools demo test lint typecheck unit bench clean

setup: system-deps tools $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages (run as root or install them):$$missing"; exit 1; fi; \
	fi

# A current erofs-utils for the EROFS tests (LZMA, DEFLATE, Zstandard, fragments, other block
# sizes), built from Debian 13's source package into .tools/; see .ci/erofs-utils.sh.
tools: system-deps
	@bash .ci/erofs-utils.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/fwscan demo -o $(OUT)

lint: setup
	$(BIN)/ruff format --check fwscan tests benchmarks
	$(BIN)/ruff check fwscan tests benchmarks

typecheck: setup
	$(BIN)/mypy --strict fwscan

unit: setup
	$(BIN)/pytest -q

test: lint typecheck unit

bench: setup
	$(BIN)/python benchmarks/unpack_bench.py

clean:
	rm -rf $(VENV) .tools out build *.egg-info .mypy_cache .ruff_cache .pytest_cache
