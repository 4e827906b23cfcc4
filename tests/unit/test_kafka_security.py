"""The Kafka clients' TLS / SASL settings (``stream_app/kafka/security.py``): read from the
environment, checked together, turned into librdkafka and Faust (aiokafka) settings, never
shown in a repr or a log line; the local broker's SASL_SSL listener configuration."""

from __future__ import annotations

import datetime
import io
import ssl
from pathlib import Path

import orjson
import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stream_app.kafka.broker import BrokerError, SaslSslListener
from stream_app.kafka.security import (
    ClientSecurity,
    KafkaAuthenticationError,
    KafkaSecurityError,
    client_config,
    faust_credentials,
)
from stream_app.cli import main

PASSWORD = "pa55-w0rd-never-shown"


def scram_env(**extra: str) -> dict[str, str]:
    return {"STREAM_APP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "STREAM_APP_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "STREAM_APP_KAFKA_SASL_USERNAME": "engine",
            "STREAM_APP_KAFKA_SASL_PASSWORD": PASSWORD, **extra}


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    """A self-signed CA certificate (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unit CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_plaintext_adds_nothing_to_a_client_configuration():
    conf = {"bootstrap.servers": "b:9092", "linger.ms": 5}
    assert client_config(conf, env={}) == conf
    assert faust_credentials(env={}) is None


def test_sasl_ssl_with_scram_gives_librdkafka_the_usual_settings(ca_file):
    conf = client_config({"bootstrap.servers": "b:9093"},
                         env=scram_env(STREAM_APP_KAFKA_SSL_CA_LOCATION=str(ca_file)))
    error_cb = conf.pop("error_cb")
    assert callable(error_cb)
    assert conf == {"bootstrap.servers": "b:9093", "security.protocol": "SASL_SSL",
                    "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "engine",
                    "sasl.password": PASSWORD, "ssl.ca.location": str(ca_file),
                    "ssl.endpoint.identification.algorithm": "https"}


def test_a_client_own_entries_win_over_the_environment():
    conf = client_config({"bootstrap.servers": "b", "sasl.username": "other"}, env=scram_env())
    assert conf["sasl.username"] == "other" and conf["sasl.password"] == PASSWORD


def test_a_refusal_of_the_credentials_is_raised_with_a_readable_message():
    from confluent_kafka import KafkaError

    on_error = client_config({}, env=scram_env())["error_cb"]
    on_error(KafkaError(KafkaError._TRANSPORT, "broker down"))  # transient: librdkafka retries
    with pytest.raises(KafkaAuthenticationError, match=r"refused user 'engine' \(SASL_SSL, "
                                                       r"SCRAM-SHA-256\): bad credentials"):
        on_error(KafkaError(KafkaError._AUTHENTICATION, "bad credentials"))


def test_the_password_comes_from_its_file_first_line(tmp_path):
    secret = tmp_path / "password"
    secret.write_text(f"{PASSWORD}\n")
    env = {**scram_env(), "STREAM_APP_KAFKA_SASL_PASSWORD": "",
           "STREAM_APP_KAFKA_SASL_PASSWORD_FILE": str(secret)}
    assert ClientSecurity.from_env(env).librdkafka()["sasl.password"] == PASSWORD


@pytest.mark.parametrize("env, needles", [
    ({"STREAM_APP_KAFKA_SECURITY_PROTOCOL": "TLS"}, ["SECURITY_PROTOCOL must be one of"]),
    (scram_env(STREAM_APP_KAFKA_SASL_MECHANISM="GSSAPI"), ["SASL_MECHANISM must be one of"]),
    (scram_env(STREAM_APP_KAFKA_SASL_PASSWORD=""), ["SASL_USERNAME and a password"]),
    (scram_env(STREAM_APP_KAFKA_SECURITY_PROTOCOL="SSL"), ["has no SASL (use SASL_SSL)"]),
    (scram_env(STREAM_APP_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
               STREAM_APP_KAFKA_SSL_CA_LOCATION="/nonexistent/ca.pem"),
     ["SSL_CA_LOCATION: no such file /nonexistent/ca.pem", "has no TLS (use SASL_SSL)"]),
    (scram_env(STREAM_APP_KAFKA_SASL_PASSWORD_FILE="/nonexistent/pw"),
     ["SASL_PASSWORD or STREAM_APP_KAFKA_SASL_PASSWORD_FILE, not both"]),
    (scram_env(STREAM_APP_KAFKA_SSL_ENDPOINT_IDENTIFICATION="maybe"),
     ["ENDPOINT_IDENTIFICATION must be https or none"]),
])
def test_a_bad_combination_is_one_error_naming_every_problem(env, needles):
    with pytest.raises(KafkaSecurityError) as caught:
        ClientSecurity.from_env(env)
    message = str(caught.value)
    assert message.startswith("Kafka security settings: ")
    assert all(needle in message for needle in needles), message
    assert PASSWORD not in message


def test_a_client_certificate_needs_its_key(ca_file):
    env = {"STREAM_APP_KAFKA_SECURITY_PROTOCOL": "SSL",
           "STREAM_APP_KAFKA_SSL_CERTIFICATE_LOCATION": str(ca_file)}
    with pytest.raises(KafkaSecurityError, match="go together"):
        ClientSecurity.from_env(env)


def test_the_cli_stops_on_a_bad_combination_with_one_line(monkeypatch, capsys):
    for name, value in scram_env(STREAM_APP_KAFKA_SASL_MECHANISM="GSSAPI").items():
        monkeypatch.setenv(name, value)
    assert main(["topics", "list"]) == 2  # before any client is made
    err = capsys.readouterr().err
    assert err.startswith("stream-app: Kafka security settings: STREAM_APP_KAFKA_SASL_MECHANISM")
    assert err.count("\n") == 1 and PASSWORD not in err


def test_no_repr_and_no_log_line_shows_a_password(tmp_path):
    key_password = "k3y-pa55-never-shown"
    for name in ("client.pem", "client.key"):
        (tmp_path / name).write_text("read by the clients, not by the settings")
    security = ClientSecurity.from_env(scram_env(
        STREAM_APP_KAFKA_SSL_CERTIFICATE_LOCATION=str(tmp_path / "client.pem"),
        STREAM_APP_KAFKA_SSL_KEY_LOCATION=str(tmp_path / "client.key"),
        STREAM_APP_KAFKA_SSL_KEY_PASSWORD=key_password))
    assert security.librdkafka()["ssl.key.password"] == key_password
    out = io.StringIO()
    structlog.configure(processors=[structlog.processors.JSONRenderer()],
                        logger_factory=structlog.PrintLoggerFactory(file=out),
                        cache_logger_on_first_use=False)
    try:
        structlog.get_logger().info("settings", security=security,
                                    password=security.sasl_password)
    finally:
        structlog.reset_defaults()
    line = out.getvalue()
    assert orjson.loads(line)["event"] == "settings" and "engine" in line
    for text in (line, repr(security), str(security)):
        assert PASSWORD not in text and key_password not in text


def test_faust_gets_sasl_credentials_with_a_tls_context(ca_file):
    from faust.auth import SASLCredentials
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    credentials = faust_credentials(env=scram_env(STREAM_APP_KAFKA_SSL_CA_LOCATION=str(ca_file)))
    assert isinstance(credentials, SASLCredentials)
    assert PASSWORD not in repr(credentials)
    auth = credentials_to_aiokafka_auth(credentials)  # what Faust hands aiokafka
    assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-256")
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("engine", PASSWORD)
    context = auth["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "unit CA"),),)]


def test_faust_gets_ssl_credentials_without_sasl_and_may_skip_the_host_name(ca_file):
    from faust.auth import SSLCredentials
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    credentials = faust_credentials(env={
        "STREAM_APP_KAFKA_SECURITY_PROTOCOL": "SSL",
        "STREAM_APP_KAFKA_SSL_CA_LOCATION": str(ca_file),
        "STREAM_APP_KAFKA_SSL_ENDPOINT_IDENTIFICATION": "none"})
    assert isinstance(credentials, SSLCredentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SSL"
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert not auth["ssl_context"].check_hostname


def test_faust_gets_plain_sasl_without_tls():
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    env = scram_env(STREAM_APP_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                    STREAM_APP_KAFKA_SASL_MECHANISM="plain")
    auth = credentials_to_aiokafka_auth(faust_credentials(env=env))
    assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_PLAINTEXT", "PLAIN")
    assert auth["ssl_context"] is None


def test_the_local_broker_sasl_ssl_listener_configuration(tmp_path):
    listener = SaslSslListener(9094, tmp_path / "broker.pem", scram_users={"engine": "s3"},
                               plain_users={"plain": "p4"})
    props = "\n".join(listener.properties())
    assert "listener.name.sasl_ssl.ssl.keystore.type=PEM" in props
    assert f"listener.name.sasl_ssl.ssl.keystore.location={tmp_path / 'broker.pem'}" in props
    assert 'PlainLoginModule required user_plain="p4";' in props
    assert listener.scram_arguments() == [
        "--add-scram", "SCRAM-SHA-256=[name=engine,password=s3]",
        "--add-scram", "SCRAM-SHA-512=[name=engine,password=s3]"]
    with pytest.raises(BrokerError, match="letters, digits"):
        SaslSslListener(9094, tmp_path / "broker.pem", plain_users={"a": 'p"; x'})
