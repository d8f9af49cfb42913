# The two commands of the README:
#   make demo   set up, then quantize -> eval -> report on the bundled SmolLM2-135M-Instruct
#   make test   set up, then run the default test suite (what CI runs, through .ci/run)
PY := .venv/bin/python
QS := .venv/bin/quantsuite
DEMO_DIR ?= out/demo

.PHONY: setup demo test test-all test-slow bench strategies clean

setup:
	bash scripts/setup.sh

demo: setup
	$(QS) demo --workdir $(DEMO_DIR)

# Locally the default suite skips tests marked slow; CI (CI=true) runs them too, so every
# backend is exercised on the real tiny model there.
test: setup
	$(PY) -m pytest -q $(if $(CI),,-m "not slow")

test-slow: setup
	$(PY) -m pytest -m "slow" -q

test-all: setup
	$(PY) -m pytest -q

bench: demo
	$(PY) scripts/bench_eval.py --variants $(DEMO_DIR)/variants --items 100 --rounds 2 --bridge

# every prompting strategy on the demo's variants, 20 items per task, accuracy next to compute
strategies: demo
	bash scripts/strategy_matrix.sh

clean:
	rm -rf out .pytest_cache
