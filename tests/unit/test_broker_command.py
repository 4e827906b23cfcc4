"""The local broker's java command line: heap and GC always, the operator's JVM options
(``STREAM_APP_KAFKA_JVM_OPTS``, read by ``Settings``) when set, for the broker only."""

from pathlib import Path

import pytest

from stream_app.kafka import broker
from stream_app.settings import Settings


@pytest.fixture(autouse=True)
def java(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker, "_require", lambda tool, purpose: f"/opt/jdk/bin/{tool}")


def local(tmp_path: Path, env: dict[str, str]) -> broker.LocalBroker:
    return broker.LocalBroker(home=tmp_path / "kafka", jars_cache=tmp_path / "cache",
                              jvm_options=Settings.from_env(env).kafka_jvm_options)


def test_the_broker_runs_with_its_heap_and_no_extra_options_by_default(tmp_path):
    cmd = local(tmp_path, {})._java(tmp_path / "libs", "kafka.Kafka", "server.properties",
                                    heap="768m")
    assert cmd[:3] == ["/opt/jdk/bin/java", "-Xms768m", "-Xmx768m"]
    assert cmd[-2:] == ["kafka.Kafka", "server.properties"]
    assert not any(a.startswith("-XX:Tiered") for a in cmd)


def test_operator_jvm_options_go_to_the_broker_before_its_class(tmp_path):
    env = {"STREAM_APP_KAFKA_JVM_OPTS": "-XX:TieredStopAtLevel=1  -Dx='a b'"}
    assert Settings.from_env(env).kafka_jvm_options == ("-XX:TieredStopAtLevel=1", "-Dx=a b")
    cmd = local(tmp_path, env)._java(tmp_path / "libs", "kafka.Kafka", "server.properties",
                                     heap="768m")
    assert "-XX:TieredStopAtLevel=1" in cmd and "-Dx=a b" in cmd
    assert cmd.index("-Dx=a b") < cmd.index("kafka.Kafka")


def test_tools_run_without_the_brokers_options(tmp_path):
    """The storage formatter is a short-lived tool: no heap, no operator options."""
    env = {"STREAM_APP_KAFKA_JVM_OPTS": "-XX:TieredStopAtLevel=1"}
    cmd = local(tmp_path, env)._java(tmp_path / "libs", "kafka.tools.StorageTool", "format")
    assert "-XX:TieredStopAtLevel=1" not in cmd and not any(a.startswith("-Xmx") for a in cmd)
