# The two commands: `make run` (the bots and web server) and `make test` (the test suite).
# Both create or reuse .venv and install the pinned dependencies; running them again installs nothing new.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lock clean

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
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Regenerate requirements.lock from the current venv (after changing pyproject.toml's dependencies).
lock:
	$(PY) -m pip freeze --exclude-editable | grep -v -E '^(torch|capbot)==' > requirements.lock

clean:
	rm -rf $(VENV)
