# SkySentry — every target does the set-up it needs, from a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Two install profiles, each reinstalled when the dependency list changes: serving (the package
# alone: what the demo, the services and the benches run; no torch) and full (+dev, +train:
# tests and training).
DEPS := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SERVING := $(VENV)/.installed-serving-$(DEPS)
FULL := $(VENV)/.installed-full-$(DEPS)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The AsyncAPI parser the contract tests run (npm, pinned by tests/contract/package-lock.json).
CONTRACT_JS := tests/contract/node_modules/.installed-$(shell cksum < tests/contract/package-lock.json | cut -d' ' -f1)
# The RTSP server the live-source tests publish a clip to (npm, pinned by its package-lock.json).
RTSP_JS := deploy/local/rtsp/node_modules/.installed-$(shell cksum < deploy/local/rtsp/package-lock.json | cut -d' ' -f1)

.PHONY: help setup setup-full system-deps contract-deps test test-fast contract fuzz screenshot demo models bench stack-up stack-down stack-status schemas check-deploy clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: system-deps $(SERVING) ## venv with the package (serving: no torch), Redis, PortAudio
setup-full: system-deps $(FULL) ## setup plus the dev and train extras (pytest, PyTorch)

system-deps: ## from Debian, when missing: redis-server, libportaudio2, kcat (the contract kit's foreign client), for the live-source tests ffmpeg (an RTSP publisher) and PulseAudio with its ALSA plugin, and for the console's browser tests chromium and chromium-driver
	@if ! command -v redis-server >/dev/null || ! command -v kcat >/dev/null || ! ldconfig -p | grep -q libportaudio.so.2 \
	    || ! command -v ffmpeg >/dev/null || ! command -v pulseaudio >/dev/null || ! command -v paplay >/dev/null \
	    || ! ls /usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so >/dev/null 2>&1 \
	    || ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "installing redis-server, libportaudio2, kcat, ffmpeg, pulseaudio, pulseaudio-utils, libasound2-plugins, chromium, chromium-driver (apt-get)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server libportaudio2 kcat \
	    ffmpeg pulseaudio pulseaudio-utils libasound2-plugins chromium chromium-driver >/dev/null; \
	fi
	@command -v java >/dev/null || { echo "Java 17+ is needed for the local Kafka broker"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is needed to fetch Kafka's jars from Maven Central"; exit 1; }
	@command -v npm >/dev/null || { echo "Node.js 18+ and npm are needed for the AsyncAPI parser of the contract tests"; exit 1; }

contract-deps: $(CONTRACT_JS) $(RTSP_JS) ## npm packages of the tests: the AsyncAPI parser (tests/contract) and the RTSP server of the live-source tests (deploy/local/rtsp)
$(CONTRACT_JS): tests/contract/package-lock.json
	cd tests/contract && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@
$(RTSP_JS): deploy/local/rtsp/package-lock.json
	cd deploy/local/rtsp && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

$(SERVING): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --retries 10 -e .
	@find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(DEPS)' -delete; touch $@

$(FULL): $(SERVING)
	@# torch's CUDA wheels are ~0.5 GB each: resume an interrupted download rather than fail the setup
	$(PY) -m pip install -q --retries 10 --resume-retries 20 -e '.[dev,train]'
	@touch $@

test: setup-full contract-deps ## the whole suite: unit, integration (real Kafka + Redis), end-to-end
	$(PY) -m pytest -q --durations=15

contract: setup-full contract-deps ## the conformance kit: the AsyncAPI document's checks and foreign clients (kcat, Kafka's Java console consumer, CloudEvents SDK, check-jsonschema) on the real broker
	$(PY) -m pytest -q tests/contract

fuzz: setup-full ## hypothesis drives every decoder (frame, audio, detection, alert, model, config): >= 10^5 inputs, 0 crashes (make test runs 300 of each)
	SKYSENTRY_FUZZ_EXAMPLES=15000 SKYSENTRY_FUZZ_MIN_TOTAL=100000 $(PY) -m pytest -q tests/fuzz --timeout 1200

screenshot: setup-full ## the console's browser tests, writing the README's picture docs/console.png from their run (make test never does)
	SKYSENTRY_WRITE_SCREENSHOT=1 $(PY) -m pytest -q tests/browser

test-fast: setup-full ## unit tests only (no broker)
	$(PY) -m pytest -q tests/unit

demo: setup ## the main job on the local stack (synthetic camera + microphone → Kafka → ...)
	$(PY) -m deploy.local.demo

models: setup-full ## train the shipped default models on ../shared/data (+ synthetic)
	$(PY) -m trainer.make_models

bench: setup ## benchmarks (ratios against raw baselines, written to bench/results/)
	$(PY) bench/producer.py
	$(PY) bench/pipeline.py
	$(PY) bench/alerting.py

stack-up: setup ## start the local Kafka + Redis
	$(VENV)/bin/skysentry stack up
stack-down: ## stop the local Kafka + Redis
	$(VENV)/bin/skysentry stack down
stack-status: ## whether the local Kafka + Redis run (exit 1 when one is stopped)
	$(VENV)/bin/skysentry stack status

schemas: setup ## regenerate docs/schemas/ from the message models
	$(VENV)/bin/skysentry schemas --write

check-deploy: ## validate docker-compose.yml, the Dockerfiles and the Helm chart (compose-go, BuildKit, Helm and the Kubernetes/KEDA API types; needs Go)
	deploy/check/run.sh

clean: ## remove the venv and local state (stops the stack first)
	-$(VENV)/bin/skysentry stack down
	rm -rf $(VENV) .skysentry *.egg-info
