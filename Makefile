# The two set-up commands of the README: `make demo` (the main job) and
# `make test`. Both create or reuse .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test system-deps clean

$(STAMP): pyproject.toml tools/package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	if command -v npm >/dev/null 2>&1; then npm ci --prefix tools --silent --no-audit --no-fund; fi
	touch $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

# Main job on the embedded default, no phone needed: convert
# mobilenet_v1_0.75_192, benchmark it on this host, write the report.
demo: $(STAMP)
	$(BIN)/mbdeploy convert --alpha 0.75 --res 192
	$(BIN)/mbdeploy inspect models/mobilenet_v1_0.75_192/mobilenet_v1_0.75_192_int8.tflite
	$(BIN)/mbdeploy bench --device local --models models/mobilenet_v1_0.75_192 --max-secs 5
	$(BIN)/mbdeploy report

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

clean:
	rm -rf models results/report
