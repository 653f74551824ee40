# ksearch: `make search` runs the main job, `make test` the tests; both install what they need.
PYTHON ?= python3
ARGS ?=

.PHONY: install search test lint gpu-test

install:
	@# torch: keep an installed build (a CUDA one on GPU machines); else the pinned CPU build
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "torch==2.13.0"
	$(PYTHON) -m pip install -q -e ".[dev]"

search: install
	$(PYTHON) -m ksearch task=moe_gemm $(ARGS)

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

# the CPU and interpreter tiers over every core (pytest-xdist); the ten slowest tests listed
test: install lint
	$(PYTHON) -m pytest -m "not gpu" -q -p no:cacheprovider -n auto --dist worksteal --durations=10

gpu-test:
	$(PYTHON) -m pytest -m gpu -q -p no:cacheprovider
