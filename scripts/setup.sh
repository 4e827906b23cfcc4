#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: Java + Maven (for the Kafka broker), Chromium (for the
# dashboard's browser test), kcat (the README's examples), a virtualenv with the engine and its
# test and bench extras. Re-runs are fast: nothing is reinstalled unless pyproject.toml changed.
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

# headless Chromium and its WebDriver, for the dashboard's browser test
# (tests/integration/test_dashboard_browser.py; skipped, with the reason, where they are missing)
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Chromium and chromium-driver with apt-get" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
      || echo "setup: Chromium could not be installed: the dashboard's browser test will be skipped" >&2
  else
    echo "setup: no Chromium (apt-get install chromium chromium-driver): the dashboard's browser test will be skipped" >&2
  fi
fi

# kcat, for the README's examples and the test that runs them (tests/integration/test_readme_kcat.py)
if ! command -v kcat >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null; }; } \
      || echo "setup: kcat could not be installed: the README's kcat test will be skipped" >&2
  else
    echo "setup: no kcat (apt-get install kcat): the README's kcat test will be skipped" >&2
  fi
fi

PY="${PYTHON:-python3}"
# the test extras, and the bench extras for the plots of the demo and the benchmarks (matplotlib)
EXTRAS="test,bench"
stamp=".venv/.installed-$( (cat pyproject.toml; echo "$EXTRAS") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  rm -f .venv/.installed-* && touch "$stamp"
fi
# the Kafka broker's jars from Maven Central (into .cache/, once), so that starting the local
# broker is not the first thing to download them
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  .venv/bin/python -c "from stream_app.kafka.broker import resolve_jars; from stream_app.settings import Settings; s = Settings.from_env(); resolve_jars(s.cache_dir, s.kafka_version)"
fi
# compile the numba kernels of the decision path once here (cached next to their source), not
# in the first worker or test that needs them
.venv/bin/python -c "from stream_app.policies import beta_max; beta_max.warm_up()"
