#!/usr/bin/env bash
# Performance benchmark of one worker against a real Kafka broker (started and stopped here unless
# KAFKA_BOOTSTRAP_SERVERS is set). Arguments go to `stream-app bench` (see --help), e.g.
#   bash scripts/bench.sh --customers 100000 --offers 20 --rate 2000 --seconds 30 \
#       --load-steps 500,1000,2000,0 --name perf-100k
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the plot and process probes need the bench extra (matplotlib, psutil)
.venv/bin/python -c "import matplotlib, psutil" 2>/dev/null || .venv/bin/python -m pip install -q -e '.[bench]'
exec .venv/bin/stream-app bench "$@"
