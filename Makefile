# The contributor's tasks (README, "Changing it"). Everything runs against
# the in-place build under src/, never an installed fastwsgi; CI (.ci/run)
# runs the same checks against the wheel pip builds.
PYTHON ?= python3
export PYTHONPATH := src

.PHONY: build debug unit test lint docs release clean

# The compiled core, in place (rerun after editing a .pyx, .pxd or includes/).
build:
	$(PYTHON) setup.py build_ext --inplace -q

# -O0 -g plus annotated HTML (setup.py's FASTWSGI_DEBUG); `make build` undoes it.
debug:
	FASTWSGI_DEBUG=1 $(PYTHON) setup.py build_ext --inplace -q --force

# The inner loop: unit tests only, harness tests skipped (the `unit` extra is enough).
unit: build
	$(PYTHON) -m pytest tests/unit -m "not bench"

# The whole suite, as CI runs it (the `test` extra, plus README's system tools).
test: build
	$(PYTHON) -m pytest

# What .ci/run checks before the tests (the `lint` extra).
lint:
	ruff check src tests bench
	mypy src
	cython-lint src

# docs/settings.md from the settings table (tests/unit/test_config.py checks it).
docs:
	$(PYTHON) -m fastwsgi.settings_doc > docs/settings.md

# sdist + wheel, repaired, installed and served (README, "Building a release").
release:
	$(PYTHON) .ci/release_check.py

clean:
	rm -rf build dist src/*.egg-info
	rm -f src/fastwsgi/*.so src/fastwsgi/*.c src/fastwsgi/*.html
