# Course commands. Every target creates the virtual environment (.venv) first if it is missing.
#   make notebooks   run every notebook with papermill into runs/notebooks/ (SIZE=full for bigger presets)
#   make test        ruff, unit tests, and nbval over every notebook
#   make lab         JupyterLab on the repository
#   make bench       CPU benchmarks;   make bench-gpu   Triton kernel benchmarks (needs CUDA)
#   make train-ddp   the course training loop on two CPU processes under torchrun (DDP)
#   make pretrain    train the course base model into checkpoints/course-llama (SIZE=full on a GPU)
#   make serve       OpenAI-compatible server of the base model on 127.0.0.1:8000
#   make corpus      rebuild the committed corpora from the installed Python and packages (--check compares)
#   make execute     re-execute the committed notebooks in place at default parameters

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SIZE ?=
NB ?=
PAPERMILL_ARGS ?=
TRAIN_ARGS ?=
CORPUS_ARGS ?=

.PHONY: venv notebooks execute test unit nbval lint lab bench bench-gpu train-ddp pretrain serve corpus clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

notebooks: $(STAMP)
	$(BIN)/python scripts/run_notebooks.py --out runs/notebooks $(if $(SIZE),--size $(SIZE)) $(if $(NB),--only $(NB)) $(PAPERMILL_ARGS)

execute: $(STAMP)
	$(BIN)/python scripts/run_notebooks.py --in-place $(if $(NB),--only $(NB))

lint: $(STAMP)
	$(BIN)/ruff check .

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q

nbval: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax notebooks -q -p no:cacheprovider

test: lint unit nbval

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.cpu

bench-gpu: $(STAMP)
	$(BIN)/python -m benchmarks.gpu

train-ddp: $(STAMP)
	$(BIN)/torchrun --standalone --nproc_per_node=2 -m minimodels.training --model llama --preset small $(TRAIN_ARGS)

pretrain: $(STAMP)
	$(BIN)/python -m minimodels.training pretrain $(if $(SIZE),--size $(SIZE)) $(PRETRAIN_ARGS)

serve: $(STAMP)
	$(BIN)/python -m minimodels.serving --model $(or $(MODEL),course-llama) --host 127.0.0.1 --port $(or $(PORT),8000)

corpus: $(STAMP)
	$(BIN)/python scripts/build_corpus.py $(CORPUS_ARGS)

clean:
	rm -rf runs .pytest_cache .ruff_cache
