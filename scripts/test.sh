#!/usr/bin/env bash
# Runs the whole test suite: unit, property, doctests, seeded simulations, and integration tests
# against a real Kafka broker that the tests start (and stop) themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q --durations=15 "$@"
