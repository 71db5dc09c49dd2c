# Two entry points for a fresh clone: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest workers; each runs torch on one thread so that they do not oversubscribe the cores.
WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -n $(WORKERS) -p no:cacheprovider
TIMM_TESTS := .cache/timm-tests
FLOOR := .cache/floor

.PHONY: install demo test lint unit timm-contract floor card zoo-table clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m timm_sesk

test: lint unit timm-contract floor

lint: $(STAMP)
	$(PY) -m ruff check .

unit: $(STAMP)
	$(PYTEST) tests

# timm's own model tests ship in timm's sdist: fetch the copy matching the installed timm, run it on our models.
timm-contract: $(STAMP)
	@version=$$($(PY) -c 'import timm; print(timm.__version__)'); \
	dir=$(TIMM_TESTS)/timm-$$version; \
	if [ ! -f $$dir/tests/test_models.py ]; then \
		mkdir -p $(TIMM_TESTS) && \
		$(PY) -m pip download --quiet --no-deps --no-binary :all: "timm==$$version" -d $(TIMM_TESTS) && \
		tar -xzf $(TIMM_TESTS)/timm-$$version.tar.gz -C $(TIMM_TESTS) timm-$$version/tests/test_models.py; \
	fi; \
	$(PYTEST) -p tests.timm_contract $$dir/tests/test_models.py

# The lowest timm and huggingface_hub setup.cfg declares, alone in a venv that shares .venv's other packages (and the
# requests stack huggingface_hub 0.x needs), through tests/floor_smoke.py. torch's floor is checked by hand (setup.cfg).
floor: $(STAMP)
	@timm=$$(sed -n 's/^ *timm>=//p' setup.cfg); hub=$$(sed -n 's/^ *huggingface_hub>=//p' setup.cfg); \
	shared=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	[ -x $(FLOOR)/bin/python ] || $(PYTHON) -m venv $(FLOOR); \
	own=$$($(FLOOR)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	echo "import site; site.addsitedir('$$shared')" > $$own/_shared.pth && \
	$(FLOOR)/bin/python -m pip install --quiet --no-deps "timm==$$timm" "huggingface_hub==$$hub" \
		requests urllib3 idna charset-normalizer certifi && \
	OMP_NUM_THREADS=1 $(FLOOR)/bin/python tests/floor_smoke.py

# Regenerate MODEL_CARD.md from weights/manifest.py (the test suite fails when the two disagree).
card: $(STAMP)
	$(PY) docs/card.py --write MODEL_CARD.md

# Regenerate README.md's zoo table from the architectures declared in timm_sesk/models (tested like the card).
zoo-table: $(STAMP)
	$(PY) docs/card.py --zoo-table --write README.md

clean:
	rm -rf $(VENV) $(TIMM_TESTS) $(FLOOR) build *.egg-info
