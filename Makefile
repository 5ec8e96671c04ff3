# The front door: `make test` on a fresh clone installs what it needs and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NODE_DIR := tests/interop/node
PEER_NODE_DIR := bench/peers/node_socketio
ADMIN_UI_DIR := tests/watch/admin-ui
STAMP := $(VENV)/.installed
SOURCES := $(shell find msstorm -name '*.pyx' -o -name '*.pxd' -o -name '*.py' | grep -v __pycache__)

.PHONY: help storm server build wheel test test-fast lint format bench fuzz clean node-deps system-deps machines

help:
	@echo "make storm     a whole storm here: server, 10,000 clients, a scenario, the report"
	@echo "make server    build, then run msstorm-server on 127.0.0.1:3000 (ARGS=... for options)"
	@echo "make build     compile the Cython extensions into a virtual environment ($(VENV))"
	@echo "make test      install everything the tests need, then run them all"
	@echo "make system-deps  check the programs the tests need (redis-server, haproxy, ip, chromium, node, npm)"
	@echo "make machines  (root) a storm across simulated machines: Redis, 3 nodes, HAProxy, swarms"
	@echo "make test-fast the protocol tests only (no sockets)"
	@echo "make lint      ruff, mypy --strict, cython-lint"
	@echo "make bench     the quick benchmarks, a few minutes (results in bench/results/);"
	@echo "               the long ones: bench/run_soak.py, bench/run_scale.py (see README)"
	@echo "make fuzz      every decoder under atheris, FUZZ_SECONDS (30) each"
	@echo "make wheel     build a wheel into dist/"
	@echo "make clean     remove build output"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The build requirements go into the venv too, so that `make build` can recompile in place.
$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/pip install --quiet --upgrade "setuptools>=77" wheel "Cython>=3.0.10,<3.4" picows==2.3.1
	$(BIN)/pip install --quiet --no-build-isolation -e '.[test,dev]'
	touch $(STAMP)

# Recompile only what changed (cythonize is incremental).
build: $(STAMP) $(SOURCES)
	$(BIN)/python setup.py --quiet build_ext --inplace

storm: build
	$(BIN)/python -m msstorm.storm.local $(ARGS)

server: build
	$(BIN)/msstorm-server $(ARGS)

node-deps: $(NODE_DIR)/node_modules/.package-lock.json $(PEER_NODE_DIR)/node_modules/.package-lock.json \
	$(ADMIN_UI_DIR)/node_modules/.package-lock.json

$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error

# The Node socket.io peer that bench/ and tests/peers measure msstorm against.
$(PEER_NODE_DIR)/node_modules/.package-lock.json: $(PEER_NODE_DIR)/package-lock.json
	cd $(PEER_NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error

# Socket.IO's admin UI, whose built files the browser tests serve.
$(ADMIN_UI_DIR)/node_modules/.package-lock.json: $(ADMIN_UI_DIR)/package-lock.json
	cd $(ADMIN_UI_DIR) && npm ci --no-audit --no-fund --loglevel=error

# What the tests need from the system (redis-server, haproxy, ip, chromium and
# chromium-driver, node, npm): the Debian packages installed when missing as root with
# apt-get; otherwise what is missing is named, with how to get it.
system-deps:
	@$(SHELL) tools/system-deps.sh

# The machines lab (bench/lab.py, as root): one network namespace per machine, a storm
# across them, and its figures against one node (bench/results/machines.md).
machines: build
	$(BIN)/python bench/run_machines.py $(ARGS)

test: system-deps build node-deps
	$(BIN)/python -m pytest -q

test-fast: build
	$(BIN)/python -m pytest -q tests/protocol

lint: $(STAMP)
	$(BIN)/ruff check msstorm examples tests bench
	$(BIN)/ruff format --check msstorm examples tests bench
	$(BIN)/mypy
	PATH="$(BIN):$$PATH" $(BIN)/cython-lint msstorm  # it runs pycodestyle from PATH

format: $(STAMP)
	$(BIN)/ruff format msstorm examples tests bench
	$(BIN)/ruff check --fix msstorm examples tests bench

bench: build node-deps
	$(BIN)/python bench/run_engine.py --quick
	$(BIN)/python bench/run_broadcast.py --quick
	$(BIN)/python bench/run_storm.py --quick
	$(BIN)/python bench/run_polling.py --quick

FUZZ_SECONDS ?= 30
FUZZ_TARGETS := socketio_packet session http_requests polling_payload handshake_query \
	pokeback_frame bus_message packed_histogram

# Coverage-guided fuzzing of every decoder of untrusted input (tests/fuzz/targets.py);
# the corpus grows in build/fuzz/, a crashing input is left in build/fuzz/crash-*.
fuzz: build
	$(BIN)/pip install --quiet atheris
	@for target in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/$$target; \
		echo "fuzzing $$target for $(FUZZ_SECONDS) s"; \
		$(BIN)/python tests/fuzz/run.py $$target build/fuzz/$$target \
			-max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build/fuzz/ \
			> build/fuzz/$$target.log 2>&1; status=$$?; \
		tail -n 2 build/fuzz/$$target.log; \
		[ $$status -eq 0 ] || { echo "see build/fuzz/$$target.log"; exit $$status; }; \
	done

wheel: $(BIN)/python
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find msstorm \( -name '*.so' -o -name '*.c' -o -name '*.html' \) -delete
	find . -name __pycache__ -prune -exec rm -rf {} +
