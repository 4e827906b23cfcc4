#!/usr/bin/env bash
# Learning quality of the engine itself on the simulator with drift (issue 6, part 4).
# Writes docs/benchmarks/learning-results-3k.{md,json,png}; the discussion is
# docs/benchmarks/learning.md. Extra arguments go to `stream-app learn-bench` and override these
# (e.g. --customers 5000 --name learning-results-5k, or --agents with engine_segment_arms,
# engine_default, engine_rules_on).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
exec .venv/bin/python -m stream_app.cli learn-bench --seeds 1,2,3 --customers 3000 --days 14 \
  --drift-days 7 --processes 2 --agents oracle,static_best,random,river_thompson,engine_best \
  --name learning-results-3k "$@"
