# The two commands: `make run` (the bots and web server) and `make test` (the test suite).
# Both create or reuse .venv and install the pinned dependencies; running them again installs nothing new.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lock lock-gpu clean bench bench-gpu

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned to the CPU build that installs from local disk (a loose pin pulls a CUDA build).
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/capbot run

test: install
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

# Benchmarks (not tests; docs/performance.md): plain Hugging Face against capbot side by side, interleaved.
# Prints Markdown tables and writes JSON under bench/results/. Builds its models under bench/.models/ first
# (the full-size model in a minute; the trained tiny fixture for the fidelity table in ~20 min on 2 cores; the
# families' full-size models at once, their trained tiny BLIP and GIT in ~10 min).
bench: install
	$(PY) -m bench.cpu
	$(PY) -m bench.families
	$(PY) -m bench.family_fidelity
	$(PY) -m bench.serving
	$(PY) -m bench.fidelity
	$(PY) -m bench.train --steps 60

# The GPU benchmarks, on a CUDA machine (`make test` runs them on the CPU in smoke mode).
bench-gpu: install
	$(PY) -m bench.gpu

# Regenerate requirements.lock from the current venv (after changing pyproject.toml's dependencies), and
# requirements-runtime.lock beside it: the same pins without the test tools (the Modal image installs it).
lock:
	$(PY) -m pip freeze --exclude-editable | grep -v -E '^(torch|capbot)==' > requirements.lock
	$(PY) -m tools.locks runtime > requirements-runtime.lock

# Regenerate requirements-gpu.lock (the Modal image's CUDA torch with its nvidia/triton wheels) from PyPI's
# metadata for Linux x86_64, constrained by requirements.lock; run after `make lock` or a torch pin change.
lock-gpu:
	$(PY) -m tools.locks gpu > requirements-gpu.lock.tmp && mv requirements-gpu.lock.tmp requirements-gpu.lock

clean:
	rm -rf $(VENV)
