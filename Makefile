# wai: `make demo` and `make test` work from a clean clone; everything goes into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# llama-cpp-python compiles llama.cpp from source; pip caches the wheel after the first build.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install install-gpu lint test demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,test]'
	touch $(STAMP)

install: $(STAMP)

# Rebuild llama-cpp-python with CUDA offload (needs the CUDA toolkit: nvcc on PATH).
install-gpu: $(STAMP)
	CMAKE_ARGS="-DGGML_CUDA=on" $(BIN)/pip install --force-reinstall --no-deps --no-cache-dir \
		"llama-cpp-python>=0.3.0"

lint: $(STAMP)
	$(BIN)/ruff check cli tests bench
	$(BIN)/ruff format --check cli tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/wai setup
	$(BIN)/wai ask -m smollm2 --max-tokens 200 "Name three things a terminal is good for."

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
