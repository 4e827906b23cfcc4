#!/usr/bin/env bash
# The main job: set up, bring up Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set), create a sandbox of
# topics, publish the learning benchmark's best configuration (config/demo.json), run a worker, the
# live dashboard and the simulated customers, print what was learned against the oracle and plot
# the learning curve (out/demo/learning-curve.png). Arguments go to `stream-app demo` (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/stream-app demo "$@"
