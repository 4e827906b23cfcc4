"""Every Kafka client over TLS + SASL against a real broker: a broker of its own with a SASL_SSL
listener (a CA and a server certificate this module makes, SCRAM and PLAIN users), on which the
admin client creates the topics, a worker (Faust's aiokafka clients and its librdkafka
producer, config and snapshot feeds) turns a request into a decision, and the CLI reads and
lists; a wrong password is refused with a readable line, and no password reaches a log."""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stream_app.kafka.broker import LocalBroker, SaslSslListener, free_port
from stream_app.kafka.security import ClientSecurity
from stream_app.settings import Settings

pytestmark = pytest.mark.integration

SCRAM_USER, PLAIN_USER = "stream-app", "plain-client"


def make_certificates(folder: Path) -> tuple[Path, Path]:
    """A CA (``ca.pem``) and the broker's key and certificate chain for 127.0.0.1 / localhost
    (``broker.pem``, the PEM keystore Kafka reads)."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key, issuer: x509.Name, signer, *extensions) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key, broker_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stream-app test CA")])
    ca = certificate("stream-app test CA", ca_key, ca_name, ca_key,
                     (x509.BasicConstraints(ca=True, path_length=0), True))
    broker = certificate(
        "localhost", broker_key, ca_name, ca_key,
        (x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                      x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "broker.pem").write_bytes(
        broker_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
        + broker.public_bytes(pem) + ca.public_bytes(pem))
    return folder / "ca.pem", folder / "broker.pem"


@dataclass(frozen=True)
class SecureCluster:
    bootstrap: str
    ca: Path
    scram_password: str
    plain_password: str
    folder: Path

    def env(self, mechanism: str, user: str, password: str) -> dict[str, str]:
        """A client's environment: SASL_SSL with ``mechanism``, the password in a file."""
        secret = self.folder / f"{user}-{secrets.token_hex(4)}.password"
        secret.write_text(password + "\n")
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "STREAM_APP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "STREAM_APP_KAFKA_SASL_MECHANISM": mechanism,
                "STREAM_APP_KAFKA_SASL_USERNAME": user,
                "STREAM_APP_KAFKA_SASL_PASSWORD_FILE": str(secret),
                "STREAM_APP_KAFKA_SSL_CA_LOCATION": str(self.ca)}


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("secure-kafka")
    ca, keystore = make_certificates(home)
    scram_password, plain_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    broker = LocalBroker(
        home=home / "kafka", jars_cache=Settings().cache_dir, port=free_port(),
        controller_port=free_port(), heap="512m", jvm_options=Settings.from_env().kafka_jvm_options,
        sasl_ssl=SaslSslListener(free_port(), keystore, scram_users={SCRAM_USER: scram_password},
                                 plain_users={PLAIN_USER: plain_password}))
    broker.up()
    try:
        yield SecureCluster(broker.secure_bootstrap, ca, scram_password, plain_password, home)
    finally:
        broker.down()


@pytest.fixture
def kafka_bootstrap(secure_cluster: SecureCluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``engine`` fixture's cluster: the SASL_SSL listener, as user ``stream-app`` with
    SCRAM-SHA-256, for this process's clients and (through the environment) the worker's."""
    for name, value in secure_cluster.env("SCRAM-SHA-256", SCRAM_USER,
                                          secure_cluster.scram_password).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STREAM_APP_LOG_LEVEL", "debug")  # the most a worker ever logs
    monkeypatch.setenv("STREAM_APP_PROBE_PORT", "0")
    return secure_cluster.bootstrap


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream_app.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def said(run: subprocess.CompletedProcess) -> str:
    """The CLI's own error line (librdkafka's log lines, from its threads, come around it)."""
    lines = [line for line in run.stderr.splitlines() if line.startswith("stream-app: ")]
    assert len(lines) == 1, run.stderr[-1500:]
    return lines[0]


def test_worker_topics_and_cli_work_over_tls_with_scram(engine, make_request, secure_cluster):
    assert ClientSecurity.from_env().protocol == "SASL_SSL"
    # the engine fixture created the topics and published the config through SASL_SSL
    decision = engine.decide(make_request(customer="c-secure"))
    assert decision["customer_id"] == "c-secure" and decision["config_version"] == "it-v1"

    env = {**os.environ, "STREAM_APP_TOPIC_PREFIX": engine.settings.topic_prefix}
    listed = cli(env, "topics", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{engine.settings.topic('decisions')}\t2 partitions" in listed.stdout
    history = cli(env, "config", "history")  # a consumer of accepted-configs
    assert history.returncode == 0 and "version it-v1" in history.stdout, history.stderr

    engine.stop()
    log = (engine.workdir / "worker.log").read_text(errors="replace")
    assert "[DEBUG]" in log  # Faust's and aiokafka's debug lines were on
    assert "APIVERSION_QUERY" not in log  # no client spoke PLAINTEXT to the TLS listener
    assert secure_cluster.scram_password not in log
    for output in (listed, history):
        assert secure_cluster.scram_password not in output.stdout + output.stderr


def test_plain_and_scram_sha_512_users_are_accepted(secure_cluster):
    for mechanism, user, password in (("PLAIN", PLAIN_USER, secure_cluster.plain_password),
                                      ("SCRAM-SHA-512", SCRAM_USER, secure_cluster.scram_password)):
        env = {**os.environ, **secure_cluster.env(mechanism, user, password)}
        created = cli(env, "topics", "create")
        assert created.returncode == 0, f"{mechanism}: {created.stderr[-500:]}"
        assert "engine-config: " in created.stdout


@pytest.mark.parametrize("command", [("topics", "list"), ("worker",)])
def test_a_wrong_password_is_refused_with_one_readable_line(secure_cluster, tmp_path, command):
    wrong = secrets.token_urlsafe(18)
    env = {**os.environ, **secure_cluster.env("SCRAM-SHA-256", SCRAM_USER, wrong),
           "STREAM_APP_DATA_DIR": str(tmp_path / "state"), "STREAM_APP_PROBE_PORT": "0"}
    refused = cli(env, *command)
    assert refused.returncode == 2
    line = said(refused)
    assert line.startswith("stream-app: the Kafka broker refused user 'stream-app' (SASL_SSL, "
                           "SCRAM-SHA-256)"), line
    assert "Authentication failed" in line
    assert wrong not in refused.stdout + refused.stderr


def test_a_client_that_does_not_trust_the_broker_certificate_is_refused(secure_cluster, tmp_path):
    other_ca, _ = make_certificates(tmp_path)  # a CA that did not sign the broker's certificate
    env = {**os.environ, **secure_cluster.env("SCRAM-SHA-256", SCRAM_USER,
                                              secure_cluster.scram_password),
           "STREAM_APP_KAFKA_SSL_CA_LOCATION": str(other_ca)}
    refused = cli(env, "topics", "list")
    assert refused.returncode == 2
    line = said(refused)
    assert line.startswith("stream-app: the TLS handshake with the Kafka broker failed"), line
    assert "certificate verify failed" in line
