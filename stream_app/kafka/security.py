"""How every Kafka client of the project authenticates and encrypts: TLS and SASL settings.

The settings are the Kafka clients' own (``security.protocol``, ``sasl.mechanism``,
``sasl.username``, ``ssl.ca.location``, ...), read from ``STREAM_APP_KAFKA_*`` environment
variables and checked together, so a bad combination is one readable error at start-up rather
than a client that connects in clear or retries for ever. The same settings become

- a librdkafka configuration for confluent-kafka's producers, consumers and admin clients
  (``client_config`` adds them to a client's own configuration), and
- Faust's ``broker_credentials`` for its aiokafka consumer and producer (``faust_credentials``).

Secrets (the SASL password, the private key's password) are held as ``Secret``: their repr and
str are masked, so neither a log line nor a repr of the settings shows them.

>>> s = ClientSecurity.from_env({
...     "STREAM_APP_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
...     "STREAM_APP_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
...     "STREAM_APP_KAFKA_SASL_USERNAME": "engine", "STREAM_APP_KAFKA_SASL_PASSWORD": "s3cret"})
>>> s.librdkafka()["sasl.mechanism"], s.librdkafka()["sasl.password"]
('SCRAM-SHA-256', 's3cret')
>>> "s3cret" in repr(s)
False
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ENDPOINT_IDENTIFICATION = ("https", "none")
PREFIX = "STREAM_APP_KAFKA_"


class KafkaAuthenticationError(RuntimeError):
    """The broker refused the client's credentials (SASL), or the TLS handshake failed (the
    broker's certificate not trusted, say): raised from the client's ``poll`` / ``flush`` /
    ``consume``, as the Java clients raise theirs, instead of reconnecting for ever."""


class KafkaSecurityError(ValueError):
    """The Kafka security settings do not make a usable combination; the message says why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("Kafka security settings: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Secret:
    """A password: shown masked, given out by ``reveal()`` only.

    >>> Secret("hunter2")
    Secret('********')
    >>> f"{Secret('hunter2')}", Secret("hunter2").reveal()
    ('********', 'hunter2')
    """

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"


@dataclass(frozen=True, slots=True)
class ClientSecurity:
    """The security settings of the project's Kafka clients (PLAINTEXT: none).

    Parameters
    ----------
    protocol
        ``security.protocol``: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    sasl_mechanism
        ``sasl.mechanism`` of the SASL protocols: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    sasl_username, sasl_password
        the SASL user and its password.
    ssl_ca_location
        PEM file of the CA certificates that sign the brokers' (None: the system's CAs).
    ssl_certificate_location, ssl_key_location, ssl_key_password
        the client's own certificate (PEM) and private key, for brokers that authenticate
        clients by certificate (mutual TLS); the key's password if it is encrypted.
    ssl_endpoint_identification
        ``https``: the broker's certificate must name the host the client connected to;
        ``none``: any host (the certificate is still verified against the CAs).

    Examples
    --------
    >>> ClientSecurity(protocol="SSL", sasl_username="engine")
    Traceback (most recent call last):
    ...
    stream_app.kafka.security.KafkaSecurityError: Kafka security settings: STREAM_APP_KAFKA_SASL_* are set but the security protocol SSL has no SASL (use SASL_SSL)
    """

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: Secret | None = None
    ssl_endpoint_identification: str = "https"

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise KafkaSecurityError(problems)

    def _problems(self) -> list[str]:
        if self.protocol not in PROTOCOLS:
            return [(f"{PREFIX}SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                     f"not {self.protocol!r}")]
        problems = []
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                problems.append(f"{PREFIX}SASL_MECHANISM must be one of {', '.join(MECHANISMS)} "
                                f"with security protocol {self.protocol}, "
                                f"not {self.sasl_mechanism!r}")
            if not self.sasl_username or self.sasl_password is None:
                problems.append(f"{PREFIX}SASL_USERNAME and a password ({PREFIX}SASL_PASSWORD "
                                f"or {PREFIX}SASL_PASSWORD_FILE) are needed with security "
                                f"protocol {self.protocol}")
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password is not None:
            problems.append(f"{PREFIX}SASL_* are set but the security protocol {self.protocol} "
                            f"has no SASL (use SASL_{'SSL' if self.uses_tls else 'PLAINTEXT'})")
        tls_files = (self.ssl_ca_location, self.ssl_certificate_location, self.ssl_key_location,
                     self.ssl_key_password)
        if not self.uses_tls and any(v is not None for v in tls_files):
            problems.append(f"{PREFIX}SSL_* are set but the security protocol {self.protocol} "
                            f"has no TLS (use {'SASL_SSL' if self.uses_sasl else 'SSL'})")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            problems.append(f"{PREFIX}SSL_CERTIFICATE_LOCATION and {PREFIX}SSL_KEY_LOCATION "
                            "go together (the client's certificate and its private key)")
        if self.ssl_key_password is not None and self.ssl_key_location is None:
            problems.append(f"{PREFIX}SSL_KEY_PASSWORD is set without {PREFIX}SSL_KEY_LOCATION")
        if self.ssl_endpoint_identification not in ENDPOINT_IDENTIFICATION:
            problems.append(f"{PREFIX}SSL_ENDPOINT_IDENTIFICATION must be https or none, "
                            f"not {self.ssl_endpoint_identification!r}")
        return problems

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol.endswith("SSL")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSecurity:
        """The settings of ``env`` (default: the process's environment). A password may come
        from a file instead (``..._PASSWORD_FILE``: its first line), as container secrets do.

        >>> ClientSecurity.from_env({}).librdkafka()
        {}
        >>> ClientSecurity.from_env({"STREAM_APP_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        ...                          "STREAM_APP_KAFKA_SASL_MECHANISM": "GSSAPI"})
        Traceback (most recent call last):
        ...
        stream_app.kafka.security.KafkaSecurityError: Kafka security settings: STREAM_APP_KAFKA_SASL_MECHANISM must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 with security protocol SASL_SSL, not 'GSSAPI'; STREAM_APP_KAFKA_SASL_USERNAME and a password (STREAM_APP_KAFKA_SASL_PASSWORD or STREAM_APP_KAFKA_SASL_PASSWORD_FILE) are needed with security protocol SASL_SSL
        """
        env = os.environ if env is None else env
        problems: list[str] = []

        def text(name: str) -> str | None:
            return env.get(PREFIX + name, "").strip() or None

        def path(name: str) -> Path | None:
            value = text(name)
            if value is not None and not Path(value).is_file():
                problems.append(f"{PREFIX}{name}: no such file {value}")
            return None if value is None else Path(value)

        def secret(name: str) -> Secret | None:
            value, file = env.get(PREFIX + name, ""), text(name + "_FILE")
            if value and file:
                problems.append(f"set {PREFIX}{name} or {PREFIX}{name}_FILE, not both")
            elif file:
                try:
                    value = next(iter(Path(file).read_text().splitlines()), "")
                except OSError as exc:
                    problems.append(f"{PREFIX}{name}_FILE: cannot read {file} ({exc.strerror})")
            return Secret(value) if value else None

        mechanism = text("SASL_MECHANISM")
        fields: dict[str, Any] = {
            "protocol": (text("SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            "sasl_mechanism": mechanism.upper() if mechanism else None,
            "sasl_username": text("SASL_USERNAME"),
            "sasl_password": secret("SASL_PASSWORD"),
            "ssl_ca_location": path("SSL_CA_LOCATION"),
            "ssl_certificate_location": path("SSL_CERTIFICATE_LOCATION"),
            "ssl_key_location": path("SSL_KEY_LOCATION"),
            "ssl_key_password": secret("SSL_KEY_PASSWORD"),
            "ssl_endpoint_identification":
                (text("SSL_ENDPOINT_IDENTIFICATION") or "https").lower(),
        }
        try:
            security = cls(**fields)
        except KafkaSecurityError as exc:
            problems.extend(exc.problems)
        if problems:
            raise KafkaSecurityError(problems)
        return security

    def librdkafka(self) -> dict[str, str]:
        """The librdkafka (confluent-kafka) configuration entries; none for PLAINTEXT.

        >>> ClientSecurity("SSL", ssl_endpoint_identification="none").librdkafka()
        {'security.protocol': 'SSL', 'ssl.endpoint.identification.algorithm': 'none'}
        """
        if self.protocol == "PLAINTEXT":
            return {}
        conf = {"security.protocol": self.protocol}
        if self.uses_sasl:
            assert self.sasl_mechanism and self.sasl_username and self.sasl_password
            conf |= {"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
                     "sasl.password": self.sasl_password.reveal()}
        if self.uses_tls:
            conf["ssl.endpoint.identification.algorithm"] = self.ssl_endpoint_identification
            for key, value in (("ssl.ca.location", self.ssl_ca_location),
                               ("ssl.certificate.location", self.ssl_certificate_location),
                               ("ssl.key.location", self.ssl_key_location)):
                if value is not None:
                    conf[key] = str(value)
            if self.ssl_key_password is not None:
                conf["ssl.key.password"] = self.ssl_key_password.reveal()
        return conf

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of Python clients (aiokafka under Faust); None without TLS."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=None if self.ssl_ca_location is None else str(self.ssl_ca_location))
        context.check_hostname = self.ssl_endpoint_identification == "https"
        if self.ssl_certificate_location is not None and self.ssl_key_location is not None:
            context.load_cert_chain(
                str(self.ssl_certificate_location), str(self.ssl_key_location),
                None if self.ssl_key_password is None else self.ssl_key_password.reveal())
        return context

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` (``faust.SSLCredentials`` or ``faust.SASLCredentials``,
        which Faust hands to aiokafka); None for PLAINTEXT."""
        if self.protocol == "PLAINTEXT":
            return None
        from faust.auth import SASLCredentials, SSLCredentials

        context = self.ssl_context()
        if not self.uses_sasl:
            return SSLCredentials(context)
        assert self.sasl_password is not None
        return SASLCredentials(username=self.sasl_username,
                               password=self.sasl_password.reveal(),
                               ssl_context=context, mechanism=self.sasl_mechanism)


def client_config(conf: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A librdkafka client's configuration ``conf`` with the security settings of ``env`` (the
    process's environment by default) added; ``conf``'s own entries win. With TLS or SASL, a
    failed handshake or refused credentials raise ``KafkaAuthenticationError`` from the
    client's next poll.

    >>> client_config({"bootstrap.servers": "127.0.0.1:9092", "linger.ms": 5}, env={})
    {'bootstrap.servers': '127.0.0.1:9092', 'linger.ms': 5}
    """
    security = ClientSecurity.from_env(env)
    extra: dict[str, Any] = security.librdkafka()
    if security.protocol != "PLAINTEXT":
        extra["error_cb"] = _refusal_of(security)
    return {**extra, **conf}


def _refusal_of(security: ClientSecurity) -> Any:
    from confluent_kafka import KafkaError

    def on_error(error: Any) -> None:
        if error.code() == KafkaError._AUTHENTICATION:
            raise KafkaAuthenticationError(
                f"the Kafka broker refused user {security.sasl_username!r} "
                f"({security.protocol}, {security.sasl_mechanism}): {error.str()}")
        if error.code() == KafkaError._SSL:
            ca = security.ssl_ca_location or "the system's CAs"
            raise KafkaAuthenticationError(
                f"the TLS handshake with the Kafka broker failed (CA certificates: {ca}, "
                f"endpoint identification: {security.ssl_endpoint_identification}): "
                f"{error.str()}")

    return on_error


def raise_refusal(client: Any) -> None:
    """Serve the error events ``client`` (a confluent-kafka client made with ``client_config``)
    holds: raises ``KafkaAuthenticationError`` if the broker refused its credentials. For the
    blocking calls that serve none (an admin client's ``list_topics``)."""
    client.poll(0)


def faust_credentials(env: Mapping[str, str] | None = None) -> Any:
    """Faust's ``broker_credentials`` from ``env`` (the process's environment by default)."""
    return ClientSecurity.from_env(env).faust_credentials()
