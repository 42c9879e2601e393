# The whole set-up: `make demo` and `make test` each create .venv if missing, install torch first (the CPU
# build, pinned by constraints.txt so no dependency drags in a CUDA torch), then fedleak (demo) or fedleak with its
# dev extras (test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.installed-core
STAMP := $(VENV)/.installed
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1

.PHONY: install demo test clean

install: $(STAMP)

# The demo needs fedleak and its runtime dependencies only; the tests add the dev extras (Flower, transformers,
# PEFT, scikit-image, ...) on top.
$(CORE): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $(CORE)

$(STAMP): $(CORE)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(CORE)
	$(BIN)/fedleak demo --out results/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf $(VENV) results
