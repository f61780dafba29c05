# Set-up and entry points. `make demo` and `make test` each do all the set-up they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
BUILD_DEPS := "scikit-build-core>=0.10" "cmake>=3.24" ninja
STAMP := $(VENV)/.icl-installed

.PHONY: all venv build demo test lint bench clean

all: build

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Installs the package editable (Python sources live here), compiling the op library.
$(STAMP): $(VENV)/bin/python pyproject.toml $(shell find custom_ops -type f 2>/dev/null)
	$(PIP) install -q $(BUILD_DEPS)
	$(PIP) install -q --no-build-isolation -e ".[test,export,bench,serve]"
	touch $(STAMP)

venv build: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/icl-onnx demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check icl_onnx tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_matmul.py

clean:
	rm -rf build $(VENV)
