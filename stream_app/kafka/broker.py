"""A single-node Apache Kafka broker (KRaft, combined broker + controller) run by the project.

The broker's jars come from Maven Central (``org.apache.kafka:kafka_2.13``) through Maven, into a
cache folder the project ignores; the machine's Java runs them. Storage is formatted with a fresh
cluster id on first start. Every process started here is stopped by its pid.

The broker always serves PLAINTEXT on ``port``; with ``sasl_ssl`` it also serves SASL over TLS
(SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN) on a port of its own, with the certificate and users
its caller gives (the security tests: ``tests/integration/test_security.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.settings import PROJECT_ROOT

POM = PROJECT_ROOT / "scripts" / "kafka" / "pom.xml"

_LOG4J = """\
Configuration:
  Appenders:
    File:
      name: FILE
      fileName: "{log}"
      PatternLayout:
        Pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: FILE
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
        additivity: false
        AppenderRef:
          - ref: FILE
"""


class BrokerError(RuntimeError):
    """The local broker cannot be installed, started or stopped; the message says why."""


def _require(tool: str, purpose: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise BrokerError(
            f"'{tool}' is not on PATH; it is needed to {purpose} "
            "(install OpenJDK 17+ and Maven, or set KAFKA_BOOTSTRAP_SERVERS to use your own cluster)"
        )
    return path


def resolve_jars(cache_dir: Path, version: str) -> Path:
    """Fetch the Kafka broker jars with Maven once; return the folder holding them."""
    libs = cache_dir.resolve() / f"kafka-{version}" / "libs"
    done = libs / ".complete"
    if done.exists():
        return libs
    mvn = _require("mvn", "fetch the Kafka broker from Maven Central")
    _require("java", "run the Kafka broker")
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), f"-Dkafka.version={version}",
        "dependency:copy-dependencies", f"-DoutputDirectory={libs}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise BrokerError(f"Maven could not fetch Kafka {version}: {' | '.join(tail)}")
    done.touch()
    return libs


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# what a user name or password of the local broker may hold: the storage tool's SCRAM syntax
# (``[name=...,password=...]``) and the JAAS line of PLAIN users have no escapes for the rest
_CREDENTIAL = re.compile(r"[A-Za-z0-9._~@+-]+")
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
_PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule required"


@dataclass(frozen=True)
class SaslSslListener:
    """A SASL_SSL listener: TLS with the server's ``keystore``, then SASL.

    ``keystore`` is a PEM file holding the server's private key (PKCS#8, unencrypted) and its
    certificate chain; ``scram_users`` log in with SCRAM-SHA-256 or SCRAM-SHA-512 (stored when
    the broker's storage is formatted, so on its first start only); ``plain_users`` with PLAIN.
    """

    port: int
    keystore: Path
    scram_users: Mapping[str, str] = field(default_factory=dict)
    plain_users: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, password in {**self.scram_users, **self.plain_users}.items():
            if not (_CREDENTIAL.fullmatch(name) and _CREDENTIAL.fullmatch(password)):
                raise BrokerError(f"user {name!r} of the local broker: names and passwords may "
                                  "hold letters, digits and . _ ~ @ + - only")

    def properties(self) -> list[str]:
        """The listener's lines of ``server.properties`` (its name is ``SASL_SSL``)."""
        plain = " ".join(f'user_{n}="{p}"' for n, p in self.plain_users.items())
        prefix = "listener.name.sasl_ssl."
        return [
            f"{prefix}sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
            f"{prefix}ssl.keystore.type=PEM",
            f"{prefix}ssl.keystore.location={self.keystore}",
            f"{prefix}ssl.client.auth=none",
            *(f"{prefix}{m}.sasl.jaas.config={_SCRAM_LOGIN}"
              for m in ("scram-sha-256", "scram-sha-512")),
            f"{prefix}plain.sasl.jaas.config={_PLAIN_LOGIN} {plain};",
        ]

    def scram_arguments(self) -> list[str]:
        """The storage tool's ``--add-scram`` arguments that store the SCRAM users."""
        return [arg for name, password in self.scram_users.items()
                for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
                for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")]


@dataclass(frozen=True)
class LocalBroker:
    """A broker whose data, config, log and pid live under ``home``."""

    home: Path
    jars_cache: Path
    version: str = "4.1.1"
    port: int = 9092
    controller_port: int = 9093
    heap: str = "768m"
    jvm_options: tuple[str, ...] = ()  # the operator's, after heap and GC (broker only)
    sasl_ssl: SaslSslListener | None = None  # an extra listener with TLS and SASL

    @property
    def secure_bootstrap(self) -> str | None:
        """The SASL_SSL listener's address (None without one)."""
        return None if self.sasl_ssl is None else f"127.0.0.1:{self.sasl_ssl.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def status(self) -> dict[str, object]:
        pid = self.pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "serving": port_open("127.0.0.1", self.port),
            "bootstrap": self.bootstrap,
            "home": str(self.home),
        }

    def _write_config(self) -> Path:
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        secure = self.sasl_ssl
        extra = f",SASL_SSL://127.0.0.1:{secure.port}" if secure else ""
        props.touch(mode=0o600)  # PLAIN users' passwords are in it
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}{extra}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}{extra}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
                    + (",SASL_SSL:SASL_SSL" if secure else ""),
                    *(secure.properties() if secure else ()),
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=4",
                    "auto.create.topics.enable=true",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "group.min.session.timeout.ms=3000",  # STREAM_APP_SESSION_TIMEOUT_S's floor
                    "log.segment.bytes=67108864",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )
        (self.home / "log4j2.yaml").write_text(_LOG4J.format(log=self.log_file))
        return props

    def _java(self, libs: Path, *args: str, heap: str | None = None) -> list[str]:
        java = _require("java", "run the Kafka broker")
        cmd = [java]
        if heap:
            cmd += [f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
            cmd += self.jvm_options
        cmd += [
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.yaml'}",
            "-Djava.awt.headless=true",
            "-cp",
            f"{libs}/*",
            *args,
        ]
        return cmd

    def up(self, timeout_s: float = 90.0) -> dict[str, object]:
        """Start the broker unless it runs already; return once it answers on its port."""
        if self.pid() is not None:
            self._wait_serving(timeout_s)
            return self.status()
        if port_open("127.0.0.1", self.port):
            raise BrokerError(
                f"port {self.port} is taken by a process this project did not start; stop it, "
                "or set KAFKA_BOOTSTRAP_SERVERS to use it"
            )
        libs = resolve_jars(self.jars_cache, self.version)
        self.home.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if not (self.home / "data" / "meta.properties").exists():
            cluster_id = _cluster_id()
            fmt = subprocess.run(
                self._java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                           "-c", str(props), "--ignore-formatted",
                           *(self.sasl_ssl.scram_arguments() if self.sasl_ssl else ())),
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise BrokerError(f"formatting Kafka storage failed: {fmt.stderr.strip()[-400:]}")
        with open(self.home / "broker.out", "ab") as out:
            proc = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(props), heap=self.heap),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        try:
            self._wait_serving(timeout_s, proc)
        except BrokerError:
            self.down()
            raise
        return self.status()

    def _wait_serving(self, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {proc.returncode}; see {self.home / 'broker.out'}"
                )
            if port_open("127.0.0.1", self.port):
                try:
                    AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=5)
                    return
                except Exception:  # noqa: BLE001 - not ready yet, retry until the deadline
                    pass
            time.sleep(0.25)
        raise BrokerError(f"the broker did not answer on {self.bootstrap} within {timeout_s:.0f} s")

    def down(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker this project started (by its pid). Returns whether one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            _reap(pid)
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _cluster_id() -> str:
    """A random cluster id as Kafka makes them (``Uuid.randomUuid``): URL-safe base64 of 16 bytes,
    never starting with '-' (the storage tool would read it as an option; 1 start in 64 failed).

    >>> all(not _cluster_id().startswith("-") for _ in range(1000))
    True
    """
    import base64

    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
