# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MODEL  ?= qwen2.5-coder-0.5b-instruct

.PHONY: run test lint venv dev clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 is a CPU build that pip takes from a local file here; GPU users: see README.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

run: venv
	$(PY) examples/run_demo.py --model $(MODEL)

# Tests run many small engines and servers side by side: idle OpenMP threads sleep at once (see qcoder/threads.py).
test: venv
	$(VENV)/bin/ruff check src tests benchmarks
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info

# Builds the CPU image, serves the default model from it and makes one chat completion (root and podman needed;
# a few minutes; not part of `make test`). See docs/deploy.md.
.PHONY: image-smoke
image-smoke: venv
	PYTHON=$(PY) deploy/image_smoke.sh
