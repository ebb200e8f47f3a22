# combkey: every target creates or reuses .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.combkey-installed
BOARD  ?= ulx3s-85f
NODE   ?= transmitter
SEED   ?= 3

.PHONY: all venv demo test test-slow test-wheel bench lint bitstream bitstream-probe bitstreams regmaps clean

all: test

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/combkey session --sim --demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow" tests

test-slow: $(STAMP)
	$(PY) -m pytest -q -n 2 -m slow tests

test-wheel: $(STAMP)
	rm -rf dist build/wheel-venv
	$(PY) -m build --wheel --outdir dist . >/dev/null
	$(PYTHON) -m venv build/wheel-venv
	build/wheel-venv/bin/pip install --quiet dist/combkey-*.whl
	cd /tmp && $(CURDIR)/build/wheel-venv/bin/combkey version
	cd /tmp && $(CURDIR)/build/wheel-venv/bin/combkey regs --device sim://transmitter read magic

bench: $(STAMP)
	$(VENV)/bin/combkey bench all

lint: $(STAMP)
	$(VENV)/bin/ruff check host gateware sim boards tests
	$(PY) tools/lint_amaranth.py host gateware sim boards tests

bitstream: $(STAMP)
	$(VENV)/bin/combkey build --board $(BOARD) --node $(NODE) --seed $(SEED)

bitstream-probe: $(STAMP)
	$(VENV)/bin/combkey build-probe --board $(BOARD)

BOARDS := ulx3s-85f ecpix5-85 colorlight-5a75b versa-ecp5-5g
NODES  := transmitter relay
bitstreams: $(STAMP)
	@set -e; for b in $(BOARDS); do for n in $(NODES); do \
	    $(VENV)/bin/combkey build --board $$b --node $$n; done; done

regmaps: $(STAMP)
	$(VENV)/bin/combkey regmap --node transmitter --format md > docs/regmap-transmitter.md
	$(VENV)/bin/combkey regmap --node relay --format md > docs/regmap-relay.md

clean:
	rm -rf build dist sim_build *.egg-info
