#!/usr/bin/env bash
# Learning quality of the engine itself on the simulator with drift (issue 6, part 4).
# Writes docs/benchmarks/learning-results.{md,json,png}; the discussion is docs/benchmarks/learning.md.
# Extra arguments go to `stream-app learn-bench` (e.g. --seeds 1,2,3 --customers 500 --processes 2).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
exec .venv/bin/python -m stream_app.cli learn-bench --seeds 1,2,3 --customers 1000 --days 14 \
  --drift-days 7 --processes 2 "$@"
