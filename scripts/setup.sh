#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: Java + Maven (for the Kafka broker), a virtualenv with the
# engine and its test extras. Re-runs are fast: nothing is reinstalled unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing OpenJDK and Maven with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
  else
    echo "setup: Java 17+ and Maven are needed to run the local Kafka broker (or set KAFKA_BOOTSTRAP_SERVERS)" >&2
    exit 1
  fi
fi

PY="${PYTHON:-python3}"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
# compile the numba kernels of the decision path once here (cached next to their source), not
# in the first worker or test that needs them
.venv/bin/python -c "from stream_app.policies import beta_max; beta_max.warm_up()"
