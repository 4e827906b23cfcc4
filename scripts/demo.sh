#!/usr/bin/env bash
# The main job: set up, bring up Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set), create the topics,
# publish the offer catalogue, run a worker and the simulated customers, print what was learned.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/stream-app demo "$@"
