# ddlib: two commands do all the set-up -- `make lab` and `make test`.
# Every target installs what it needs first (into .venv) and keeps tool state in .state/.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8888
NB     ?= notebooks
STAMP  := $(VENV)/.installed

STATE := $(CURDIR)/.state
export NUMBA_CACHE_DIR     := $(CURDIR)/.cache/numba
export MPLCONFIGDIR        := $(STATE)/matplotlib
export JUPYTER_CONFIG_DIR  := $(STATE)/jupyter/config
export JUPYTER_RUNTIME_DIR := $(STATE)/jupyter/runtime
export JUPYTER_DATA_DIR    := $(STATE)/jupyter/data
export IPYTHONDIR          := $(STATE)/ipython
export JUPYTER_PLATFORM_DIRS := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export HYPOTHESIS_STORAGE_DIRECTORY := $(STATE)/hypothesis

NBVAL_FLAGS := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
               --nbval-cell-timeout 300 -p no:cacheprovider

.PHONY: setup lab test test-unit test-distributed test-cudasim test-notebooks test-notebooks-avx2 ptx-check notebooks bench bench-gpu lint clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,distributed]'
	@mkdir -p $(STATE) $(NUMBA_CACHE_DIR)
	@touch $(STAMP)

# Jupyter refuses to start as root unless told; containers and CI machines often are root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

# The server's login token is made once per checkout and kept in .state/, so the address
# printed here is the one to open (an address without it only reaches the login page).
# No port retries: if PORT is taken the server stops rather than move to a port not printed.
LAB_TOKEN := $(STATE)/jupyter/lab-token

$(LAB_TOKEN):
	@mkdir -p $(dir $@)
	@umask 077; $(PYTHON) -c "import secrets; print(secrets.token_hex(24))" > $@

lab: setup $(LAB_TOKEN)
	@echo "JupyterLab on notebooks/: open http://localhost:$(PORT)/lab?token=$$(cat $(LAB_TOKEN))"
	@echo "(the token is kept in .state/jupyter/lab-token; Ctrl-C stops the server)"
	@JUPYTER_TOKEN="$$(cat $(LAB_TOKEN))" $(VENV)/bin/jupyter lab --no-browser --port=$(PORT) \
		--ServerApp.port_retries=0 --ServerApp.root_dir=notebooks $(ALLOW_ROOT)

test: setup
	@status=0; \
	$(MAKE) --no-print-directory test-unit || status=1; \
	$(MAKE) --no-print-directory test-distributed || status=1; \
	$(MAKE) --no-print-directory test-cudasim || status=1; \
	$(MAKE) --no-print-directory test-notebooks || status=1; \
	exit $$status

# Unit tests and every module's >>> examples (--doctest-modules; conftest.py keeps the cuda
# backend's examples for the simulator job).
test-unit: setup
	$(PY) -m pytest tests ddlib --doctest-modules -q -n 2 -m "not cuda and not gpu and not ptx" -p no:cacheprovider --ignore=tests/distributed

# The Ray tests (Sec. 3.7.2) in one process: one private loopback Ray for all of them
# (two xdist workers would start two), stopped at the end; --durations shows their cost.
test-distributed: setup
	$(PY) -m pytest tests/distributed -q -p no:cacheprovider --durations=5

# The cuda backend's kernels on numba's CUDA simulator (the variable must be set before
# numba is imported, hence a separate pytest process).
test-cudasim: setup
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest tests ddlib/backend/cuda --doctest-modules -q -n 2 -m "cuda and not gpu and not ptx" -p no:cacheprovider

test-notebooks: setup
	PYTHONPATH=tests $(PY) -m pytest $(NBVAL_FLAGS) -p nbval_plugin -q -n 2 --dist loadfile $(NB)

# The same check as an AVX2-only CPU would run it, on a machine with AVX-512: OpenBLAS,
# numba and NumPy's own loops are held to AVX2 code, whose sums round differently.  A
# notebook executed on one kind of machine must pass on the other (CI may be either).
AVX2_ENV := OPENBLAS_CORETYPE=Haswell NUMBA_CPU_NAME=haswell \
	NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR" \
	NUMBA_CACHE_DIR=$(CURDIR)/.cache/numba-avx2
test-notebooks-avx2: setup
	$(AVX2_ENV) PYTHONPATH=tests $(PY) -m pytest $(NBVAL_FLAGS) -p nbval_plugin -q -n 2 --dist loadfile $(NB)

# Every cuda kernel compiled to PTX for a real GPU, no GPU needed; NVIDIA's compiler
# libraries are a large install, so they come with this target only.
PTX_STAMP := $(VENV)/.installed-ptx
$(PTX_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,distributed,ptx]'
	@touch $(PTX_STAMP)

ptx-check: $(PTX_STAMP)
	$(PY) -m pytest tests/cuda/test_ptx.py -q -m ptx -p no:cacheprovider

notebooks: setup
	@for nb in $$(find $(NB) -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | sort); do \
		echo "executing $$nb"; \
		$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=600 $$nb || exit 1; \
		$(PY) tests/strip_notebook.py $$nb; \
	done

bench: setup
	$(PY) -m benchmarks

# For a machine with an NVIDIA GPU: the gpu-marked tests, then the GPU benchmark.
bench-gpu: setup
	$(PY) -m pytest tests -q -m gpu -p no:cacheprovider
	$(PY) -m benchmarks.gpu

lint: setup
	$(VENV)/bin/ruff check ddlib tests benchmarks

clean:
	rm -rf $(VENV) .cache .state .pytest_cache .hypothesis .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
