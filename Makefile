# wai: `make demo` and `make test` work from a clean clone; everything goes into .venv.
# Another Python: `make test PYTHON=python3.13`; beside the default one, `VENV=.venv-3.13` too.
PYTHON ?= python3
# PYTHON=python3.13 where pyenv installed 3.13 but its shims do not offer it (`pyenv global` names
# another version): pyenv's own 3.13 is used.
ifeq ($(shell $(PYTHON) -c pass 2>/dev/null && echo runs),)
  PYENV_PYTHON := $(lastword $(sort $(wildcard $(shell pyenv root 2>/dev/null)/versions/$(patsubst python%,%,$(notdir $(PYTHON))).*/bin/$(notdir $(PYTHON)))))
  ifneq ($(PYENV_PYTHON),)
    override PYTHON := $(PYENV_PYTHON)
  endif
endif
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)
# The stamp names the Python: asking for another one remakes the venv with it.
STAMP  := $(VENV)/.installed-$(PYTHON_VERSION)
# llama-cpp-python compiles llama.cpp from source; the wheel is kept in WHEEL_CACHE under a key made
# of its version and build flags, so a second install costs seconds and never takes a wheel that
# was built with other flags (pip's own cache keys wheels by the source archive alone).
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
LLAMA_CPP_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)
WHEEL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/wai/wheels
BUILD_MARK  := $(VENV)/wai-llama-build

# portable: x86-64 with AVX2 (Haswell, 2013, and later), whatever else the CPU advertises.
# Hypervisors may list AVX-512 or AMX in CPUID without running them, so nothing beyond AVX2.
PORTABLE_CPU := -DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
	-DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF \
	-DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
	-DGGML_AMX_BF16=OFF
# native: -march=native for this machine, but never AMX tiles (they trap where CPUID lies).
NATIVE_CPU := -DGGML_NATIVE=ON
NATIVE_CFLAGS := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
# cuda: the portable CPU side plus CUDA code for Turing (PTX) to Hopper.
CUDA_ARCHITECTURES ?= 75-virtual;80-virtual;86-real;89-real;90-real
CUDA := $(PORTABLE_CPU) -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCHITECTURES)

llama_cmake_args = $(if $(filter native,$(1)),$(NATIVE_CPU),$(if $(filter cuda,$(1)),$(CUDA),$(PORTABLE_CPU)))
llama_cflags = $(if $(filter native,$(1)),$(NATIVE_CFLAGS))

# $(call install_llama,portable|native|cuda): build the wheel once per set of flags, then install it.
define install_llama
	@set -e; kind='$(1)'; args='$(call llama_cmake_args,$(1))'; cflags='$(call llama_cflags,$(1))'; \
	key=$$(printf '%s\n' '$(LLAMA_CPP_VERSION)' "$$args" "$$cflags" \
		"$$($(BIN)/python -c 'import sys; print(sys.version)')" "$$(c++ --version 2>&1 | head -n 1)" \
		| sha256sum | cut -c1-16); \
	dir='$(WHEEL_CACHE)'/"$$kind-$$key"; \
	if ! ls "$$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then \
		echo "building llama-cpp-python $(LLAMA_CPP_VERSION) ($$kind) from source: about 6 minutes on 2 cores, once"; \
		rm -rf "$$dir.part"; \
		CMAKE_ARGS="$$args" CFLAGS="$$cflags" CXXFLAGS="$$cflags" $(BIN)/pip wheel --quiet --no-deps \
			--no-cache-dir --no-binary llama-cpp-python -w "$$dir.part" 'llama-cpp-python==$(LLAMA_CPP_VERSION)'; \
		mkdir -p "$$(dirname "$$dir")"; rm -rf "$$dir"; mv "$$dir.part" "$$dir"; \
	fi; \
	$(BIN)/pip install --quiet --no-deps --force-reinstall "$$dir"/llama_cpp_python-*.whl; \
	echo "$$kind" > $(BUILD_MARK); \
	echo "llama.cpp: $$kind build installed ($$dir)"
endef

.PHONY: install install-native install-portable install-gpu lint test test-fast coverage demo bench clean browser

# A venv remade for a new pyproject.toml keeps the build its user chose (native, cuda); one made
# by another Python is cleared first (its packages were built for that one).
$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { echo "wai: $(PYTHON) $(if $(PYTHON_VERSION),is Python $(PYTHON_VERSION),does not run): wai needs Python 3.11 or later (PYTHON=python3.13, say)" >&2; exit 2; }
	$(PYTHON) -m venv $(if $(filter-out $(PYTHON_VERSION),$(shell $(BIN)/python -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)),--clear) $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(call install_llama,$(shell cat $(BUILD_MARK) 2>/dev/null || echo portable))
	$(BIN)/pip install --quiet -e '.[local,serve,test]'
	touch $(STAMP)

install: $(STAMP)

# The fastest build for this machine; `wai setup` then checks it, and a build that crashes in the
# check is replaced by the portable one (any other failure of `wai setup` is only reported).
install-native: $(STAMP)
	$(call install_llama,native)
	@$(BIN)/wai setup || { \
		$(BIN)/python -m wai.llama.check --crashed || exit 1; \
		echo "wai: the native build crashed in its check; installing the portable build instead" >&2; \
		$(MAKE) --no-print-directory install-portable; $(BIN)/wai setup; }

install-portable: $(STAMP)
	$(call install_llama,portable)

# CUDA offload (needs the CUDA toolkit: nvcc on PATH); the CPU side stays portable.
install-gpu: $(STAMP)
	$(call install_llama,cuda)

lint: $(STAMP)
	$(BIN)/ruff check cli tests bench
	$(BIN)/ruff format --check cli tests bench
	$(BIN)/mypy

# The tests run on two workers a core (pytest-xdist), each file whole on one worker, so that a
# module's fixtures (a loopback server, a set of runs) are set up once. Two a core because most
# end-to-end tests wait on a process, a server or a timer rather than the CPU (on 2 cores: 95 s
# against 136 s with one a core). PYTEST_JOBS=0 runs them in order.
PYTEST_JOBS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) * 2 )))
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_JOBS) --dist loadfile

test: lint browser
	$(PYTEST)

# The loop while developing: everything but the end-to-end tests (real processes, terminals,
# signals, real llama.cpp, the browser), in-process and in seconds.
test-fast: $(STAMP)
	$(PYTEST) -m "not e2e"

# Line coverage of cli/wai by the whole suite, the wai processes it starts included (see
# [tool.coverage] in pyproject.toml); `make coverage PYTEST_ARGS='-m "not e2e"'` for the fast part.
coverage: $(STAMP) browser
	rm -rf .cache/coverage && mkdir -p .cache/coverage
	@status=0; $(BIN)/coverage run -m pytest -n $(PYTEST_JOBS) --dist loadfile $(PYTEST_ARGS) || status=$$?; \
	$(BIN)/coverage combine --quiet && $(BIN)/coverage report; exit $$status

# The browser test of `wai serve`'s page drives Debian's chromium (Playwright brings no browser
# here). Installed when missing and apt-get can run as root; otherwise that test is skipped.
browser:
	@if ! [ -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser test of wai serve's page (once)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
			|| echo "chromium could not be installed: the browser test will be skipped"; \
	fi

demo: $(STAMP)
	$(BIN)/wai setup
	$(BIN)/wai ask -m smollm2 --max-tokens 200 "Name three things a terminal is good for."

# The first run builds llama.cpp's own llama-server and llama-batched-bench (the baselines of two
# benchmarks) into ~/.cache/wai/llama-tools, once: about 5 minutes on 2 cores (bench/llama_tools.py).
bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
