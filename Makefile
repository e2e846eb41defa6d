# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# the agent's default model (README: the agent suite); MODEL=qwen2.5-coder-0.5b-instruct is faster, weaker
MODEL  ?= qwen2.5-coder-1.5b-instruct

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
# The quantization and kernel tests then run twice more, for the CPUs this machine is not: PyTorch's AVX2 dispatch
# with the C kernels built for Haswell (no AVX-512) and oneDNN held to AVX2 (else its bf16 GEMM stays native), and
# PyTorch's kernels alone (as on aarch64).
KERNEL_TESTS := tests/model/test_quant.py tests/model/test_cpu_kernels.py tests/model/test_gguf_linear.py \
	tests/model/test_cpu_fallback.py tests/model/test_attention.py
test: venv
	$(VENV)/bin/ruff check src tests benchmarks
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 QCODER_KERNEL_ARCH=haswell OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q $(KERNEL_TESTS)
	QCODER_NATIVE_KERNELS=0 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q $(KERNEL_TESTS)

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
