# The two front-door commands: `make demo` and `make test`.
# Both create .venv on first use (CPU PyTorch pinned by constraints.txt) and the evaluator's runtime
# (`kit runtime install`, once per machine), and reuse them after.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo_data
# Training seed for the demo (initial weights, shuffling, flips): make demo SEED=3
SEED   ?= 0

.PHONY: demo demo-image test test-all perf setup runtime clean

setup: $(STAMP)

# The evaluator's runtime (gasbench 0.11.1's torch, transformers, timm … in their own venv under
# ~/.cache/sn34-kit/runtimes, or $$KIT_RUNTIME_DIR): made once per machine, then every bundle runs in it.
runtime: $(STAMP)
	$(BIN)/kit runtime install --quiet

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@# transformers 5.25 (before the evaluator pins) pulled `kernels`, whose newer API transformers 5.2 cannot import.
	@$(BIN)/python -m pip uninstall --quiet --yes kernels 2>/dev/null || true
	@# Every Python of this venv (your own scripts too) can import torchvision, timm and open_clip: see sn34_torchvision.py.
	@echo "import sn34_torchvision; sn34_torchvision.install()" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/sn34_torchvision.pth"
	@touch $(STAMP)

demo: runtime
	$(BIN)/python -m discriminator.demo video --seed $(SEED)

demo-image: runtime
	$(BIN)/python -m discriminator.demo image --seed $(SEED)

test: runtime
	$(BIN)/python -m pytest -q -m "not slow"

test-all: runtime
	$(BIN)/python -m pytest -q

perf: $(STAMP)
	$(BIN)/python benchmarks/export_latency.py

clean:
	rm -rf $(VENV) submissions/*/ results/ $(DEMO_DIR)
