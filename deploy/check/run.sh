#!/usr/bin/env bash
# Validate the container deployment without a Docker engine: docker-compose.yml through the
# Compose loader, every Dockerfile through BuildKit's parser and `docker build --check`'s lint,
# deploy/docker/prometheus.yml through Prometheus' config loader, and the Helm chart deploy/helm/skysentry
# (helm lint + helm template over its values files, strict decoding with the Kubernetes, KEDA and
# Prometheus Operator types, and its properties; see main.go and helm.go for the list).
#
#   deploy/check/run.sh            # from anywhere; exits 1 on any problem
#   deploy/check/run.sh -os-env    # interpolate with your shell's environment and .env, as `docker compose` would
#   deploy/check/run.sh -print     # also print the resolved model, as `docker compose config` would
#
# Needs Go >= 1.26.8 (BuildKit's minimum); the first run fetches the modules from the Go proxy.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
command -v go > /dev/null || { echo "deploy check: Go >= 1.26.8 is needed (https://go.dev/dl/)" >&2; exit 1; }
cd "$here"
exec go run . -root "$root" "$@"
