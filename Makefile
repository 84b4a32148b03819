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

# Main job, no phone needed: convert four members of the family (the embedded
# default 0.75_192 among them) in fp32 and int8, benchmark them on this host,
# write the report, whose first figure is latency against MACs.
DEMO_MODELS := models/mobilenet_v1_0.25_128 models/mobilenet_v1_0.5_160 models/mobilenet_v1_0.75_192 models/mobilenet_v1_1.0_224
demo: $(STAMP)
	$(BIN)/mbdeploy convert --alpha 0.25 --res 128 --formats tflite --precisions fp32,int8
	$(BIN)/mbdeploy convert --alpha 0.5 --res 160 --formats tflite --precisions fp32,int8
	$(BIN)/mbdeploy convert --alpha 0.75 --res 192 --formats tflite --precisions fp32,int8
	$(BIN)/mbdeploy convert --alpha 1.0 --res 224 --formats tflite --precisions fp32,int8
	$(BIN)/mbdeploy inspect models/mobilenet_v1_0.75_192/mobilenet_v1_0.75_192_int8.tflite
	$(BIN)/mbdeploy bench --device local $(addprefix --models ,$(DEMO_MODELS)) --max-secs 3
	$(BIN)/mbdeploy report

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

clean:
	rm -rf models results/report
