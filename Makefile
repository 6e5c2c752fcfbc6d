# ltkd: every set-up step lives here; each target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LTKD_DATA ?= $(if $(wildcard ../shared/data/cifar-100-python),../shared/data,./data)
export LTKD_DATA
TABLE ?= cifar100_lt
SCALE ?= full
JOBS ?= 1
WHEEL_PYTHON ?= 3.12
WHEEL_PLATFORM ?= manylinux2014_x86_64
WHEEL_WITH ?=
SMOKE_ARGS := trainer=smoke dataset.max_test_per_class=3
SEEDS ?= 0 1 2
IMBALANCES ?= 10 20
CPU_SCALE_EXPERIMENT := experiment=cpu_scale_cifar100_lt_g100
CPU_SCALE := $(CPU_SCALE_EXPERIMENT) sweep_name=cpu_scale_cifar100_lt_g100
CPU_SCALE_IMBALANCE := $(CPU_SCALE_EXPERIMENT) sweep_name=cpu_scale_cifar100_lt_imbalance
PYTEST_ARGS ?=
MUTMUT := mutmut==3.8.1
MUTATION_CHILDREN ?= 1
MUTATION_LABEL ?= mutation

.PHONY: help install test test-all lint format mutation demo cpu-scale cpu-scale-imbalance reproduce-table table wheelhouse bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install ltkd (editable) with its dev extras

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check ltkd scripts tests

format: $(STAMP)  ## ruff format + import sorting
	$(VENV)/bin/ruff check --fix ltkd scripts tests

test: lint  ## ruff, then the test suite without the slow tests (tiny fake data; CPU; one worker per core)
	$(PY) -m pytest -q -n auto -m 'not slow' $(PYTEST_ARGS)

test-all: lint  ## ruff, then every test, the slow ones included
	$(PY) -m pytest -q -n auto -m '' $(PYTEST_ARGS)

mutation: $(STAMP)  ## mutation testing (mutmut; settings in pyproject.toml) of the losses, distillers and config checks; writes docs/quality/
	$(PY) -m pip install --quiet '$(MUTMUT)'
	nice -n 19 $(VENV)/bin/mutmut run --max-children $(MUTATION_CHILDREN)
	# the mutants not killed so far, again: against the tests written since (mutmut keeps other results)
	nice -n 19 $(VENV)/bin/mutmut run --max-children $(MUTATION_CHILDREN) \
		$$($(VENV)/bin/mutmut results | sed -n 's/^ *\([^:]*\): .*/\1/p')
	$(PY) scripts/mutation_report.py --label $(MUTATION_LABEL)

demo: $(STAMP)  ## CPU-sized run on real CIFAR-100-LT (γ=100): teacher, KD and LTKD students, then the table
	$(PY) -m ltkd.train -m experiment=demo loss=kd,ltkd sweep_name=demo
	$(PY) scripts/make_table.py multirun/demo --name demo --out multirun/demo

cpu-scale: $(addprefix cpu-scale-seed-,$(SEEDS))  ## reduced-scale evidence on real CIFAR-100-LT γ=100 (resnet20 -> resnet8, 20 epochs; SEEDS="0 1 2"): teacher, KD, LTKD, BKD, KD/LTKD from a logit-adjusted teacher, LTKD rebalance-only and reweight-only, mean ± std, group masses; seeds in parallel with make -j3 (then OMP_NUM_THREADS=1)
	$(PY) scripts/group_mass.py multirun/cpu_scale_cifar100_lt_g100  # runs made before group masses existed
	$(PY) scripts/make_table.py multirun/cpu_scale_cifar100_lt_g100 --name cpu_scale_cifar100_lt_g100 --archive

cpu-scale-seed-%: $(STAMP)
	$(PY) -m ltkd.train -m $(CPU_SCALE)/seed$* seed=$* loss=kd,ltkd,bkd
	$(PY) -m ltkd.train -m $(CPU_SCALE)/seed$* seed=$* teacher.objective=logit_adjusted loss=kd,ltkd
	$(PY) -m ltkd.train -m $(CPU_SCALE)/seed$* seed=$* loss=ltkd loss.reweight=false
	$(PY) -m ltkd.train -m $(CPU_SCALE)/seed$* seed=$* loss=ltkd loss.rebalance=none

cpu-scale-imbalance: cpu-scale-seed-0 $(addprefix cpu-scale-imbalance-g,$(IMBALANCES))  ## does the gain grow with imbalance? KD vs LTKD at γ=10 and 20 (IMBALANCES, seed 0) at cpu-scale's recipe, one table with cpu-scale's seed 0 (γ=100); in parallel with make -j3 (then OMP_NUM_THREADS=1)
	$(PY) scripts/make_table.py multirun/cpu_scale_cifar100_lt_imbalance multirun/cpu_scale_cifar100_lt_g100/seed0 --name cpu_scale_cifar100_lt_imbalance --archive

cpu-scale-imbalance-g%: $(STAMP)
	$(PY) -m ltkd.train -m $(CPU_SCALE_IMBALANCE)/g$* seed=0 dataset.imbalance_factor=$* loss=kd,ltkd

reproduce-table: $(STAMP)  ## run a paper table's sweep (TABLE=cifar100_lt|tinyimagenet_lt|imagenet_lt|ablation|cifar100_lt_g100_resnet32x4_resnet8x4) and tabulate it; JOBS=N runs N jobs at once (one device, teacher shared)
	$(PY) -m ltkd.train -m experiment=table_$(TABLE) sweep_name=table_$(TABLE)_$(SCALE) $(if $(filter smoke,$(SCALE)),$(SMOKE_ARGS),) $(if $(filter-out 1,$(JOBS)),hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS),)
	$(PY) scripts/make_table.py multirun/table_$(TABLE)_$(SCALE) --name $(TABLE)$(if $(filter smoke,$(SCALE)),_smoke,) --archive

table: $(STAMP)  ## tabulate a folder of runs, its runs kept in results/runs/<NAME>: make table RUNS=multirun/<sweep> [NAME=...]; no RUNS: every committed table again from results/runs/, byte for byte
ifdef RUNS
	$(PY) scripts/make_table.py $(RUNS) $(if $(NAME),--name $(NAME),) --archive
else
	for runs in results/runs/*/; do $(PY) scripts/make_table.py $${runs%/} --name $$(basename $$runs) || exit 1; done
endif

wheelhouse: $(STAMP)  ## wheels for an offline GPU node: ltkd + what a PyTorch image lacks (WHEEL_PYTHON=3.12 WHEEL_PLATFORM=manylinux2014_x86_64 WHEEL_WITH=wandb)
	$(PY) scripts/wheelhouse.py --out wheelhouse --python $(WHEEL_PYTHON) --platform $(WHEEL_PLATFORM) $(foreach w,$(WHEEL_WITH),--with $(w))

bench: $(STAMP)  ## throughput of our training path vs the usual DataLoader loop on this machine
	$(PY) scripts/bench.py $(BENCH_ARGS)

clean:  ## remove outputs, sweeps, caches (not the venv, not the data)
	rm -rf outputs multirun cache mutants .pytest_cache .ruff_cache
