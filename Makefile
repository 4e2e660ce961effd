# Two commands do all set-up: `make demo` runs the main job, `make test` the tests.
# Each creates .venv and installs the project into it when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MPLBACKEND ?= Agg

.PHONY: install demo test lint lab benchmark clean-demo

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (sftlib)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

## The embedded default study: local Hopper-v5 datasets -> pretraining -> fine-tuning of
## direct/pex/sft on 4 seeds -> figures and stability table under results/quick/.
demo: $(STAMP)
	$(PY) -m sftlib sweep params/quick.yaml --results results
	$(PY) -m sftlib figures results/quick

## Unit, behavioural and notebook (nbval) tests; see pytest.ini.
test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check sftlib tests benchmarks scripts conftest.py
	$(VENV)/bin/ruff format --check sftlib tests benchmarks scripts conftest.py
	$(PY) scripts/check_notebooks.py

## As root (most Docker images) Jupyter refuses to start without --allow-root.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

benchmark: $(STAMP)
	$(PY) benchmarks/updates_per_second.py
