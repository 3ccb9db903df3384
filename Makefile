# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch where no GPU is present (this pin is the version the toolkit is tested with);
# an already-installed torch -- a user's CUDA build, say -- is never replaced.
TORCH_CPU_SPEC ?= torch==2.13.0
TORCH_GPU_SPEC ?= torch
OUT ?= demo-out

.PHONY: setup demo test bench clean constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
	  echo "torch already installed: $$($(BIN)/python -c 'import torch; print(torch.__version__)') (left as is)"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  $(BIN)/pip install -q "$(TORCH_GPU_SPEC)"; \
	else \
	  $(BIN)/pip install -q "$(TORCH_CPU_SPEC)"; \
	fi
	$(BIN)/pip install -q -c constraints.txt -e ".[test,serve]"

# The versions `setup` installs: rewrite constraints.txt from this venv after the suite passed in it
# (torch and what torch requires are left out, so a user's torch build is never replaced).
constraints: $(BIN)/python
	$(BIN)/python scripts/freeze_constraints.py --out constraints.txt

demo: setup
	$(BIN)/lmm-apa demo --out $(OUT)

test: setup
	$(BIN)/python -m pytest -q --durations=15

# CPU benchmarks (figures in benchmarks/RESULTS.md); the GPU ones are in benchmarks/README.md.
bench: setup
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_models.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_decode.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache demo-out
