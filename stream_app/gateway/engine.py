"""The gateway's line to the engine: decision requests and outcomes out, decisions back, over Kafka.

``decide`` produces a ``decision-requests`` message keyed by its customer (so it meets the
customer's state on its partition, as any channel's request would) and waits, at most the
timeout, for the decision with the same ``request_id`` (``correlator.py``). ``send_outcome``
produces an ``outcomes`` message and waits for the broker's acknowledgement. The producer is
librdkafka's, polled by a thread of its own for delivery reports; a request the broker refused
answers at once (``EngineUnavailable``) instead of waiting out the timeout.

``FakeEngine``-style stand-ins (the unit tests) implement the same two coroutines.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaError, Producer

from stream_app.kafka.client import PARTITIONER
from stream_app.kafka.security import client_config
from stream_app.gateway.correlator import Arrival, DecisionCorrelator
from stream_app.settings import Settings

__all__ = ["Answered", "EngineLink", "EngineUnavailable", "KafkaEngine"]


class EngineUnavailable(RuntimeError):
    """The message could not be handed to Kafka; ``str(exc)`` says why (HTTP 503)."""


@dataclass(frozen=True, slots=True)
class Answered:
    """The engine's decision and where the time went (milliseconds)."""

    decision: dict[str, Any]
    engine_ms: float  # request produced -> decision produced (both Kafka timestamps)
    return_ms: float  # decision produced -> read by the gateway


class EngineLink(Protocol):
    async def decide(self, request: dict[str, Any], timeout_s: float) -> Answered | None:
        """The decision, or None when none came within ``timeout_s``."""

    async def send_outcome(self, outcome: dict[str, Any]) -> None:
        """Return once the outcome is stored by Kafka (``EngineUnavailable`` otherwise)."""


class KafkaEngine:
    """``EngineLink`` over the contract topics of ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._requests = settings.topic("decision-requests")
        self._outcomes = settings.topic("outcomes")
        self._producer = Producer(client_config({
            "bootstrap.servers": settings.bootstrap_servers, "acks": "all",
            "enable.idempotence": True, "partitioner": PARTITIONER,
            "linger.ms": settings.decision_linger_ms, "message.timeout.ms": 30_000,
        }))
        self.correlator = DecisionCorrelator(
            settings.bootstrap_servers, settings.topic("decisions"),
            group_id=f"{settings.app_id}-gateway-{uuid.uuid4().hex[:8]}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._loop.run_in_executor(None, self.correlator.open)
        self.correlator.start(self._loop)
        self._poller = threading.Thread(target=self._poll, name="producer-poll", daemon=True)
        self._poller.start()

    async def stop(self) -> None:
        self._stop.set()
        loop = asyncio.get_running_loop()
        if self._poller is not None:
            await loop.run_in_executor(None, self._poller.join, 5)
        await loop.run_in_executor(None, self._producer.flush, 5)
        await loop.run_in_executor(None, self.correlator.close)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _produce(self, topic: str, key: str, value: dict[str, Any], on_delivery) -> None:
        try:
            self._producer.produce(topic, key=key.encode(), value=orjson.dumps(value),
                                   on_delivery=on_delivery)
        except BufferError:
            raise EngineUnavailable("the gateway's Kafka producer queue is full") from None

    async def decide(self, request: dict[str, Any], timeout_s: float) -> Answered | None:
        assert self._loop is not None, "start() first"
        loop, request_id = self._loop, request["request_id"]
        future = self.correlator.expect(request_id)

        def delivered(err: KafkaError | None, msg: Any) -> None:  # the poller's thread
            if err is not None:
                loop.call_soon_threadsafe(self.correlator.fail, request_id, EngineUnavailable(
                    f"decision request not delivered to Kafka: {err.str()}"))

        sent_ms = time.time() * 1000.0
        try:
            self._produce(self._requests, request["customer_id"], request, delivered)
            async with asyncio.timeout(timeout_s):
                arrival: Arrival = await future
        except TimeoutError:
            return None
        finally:
            self.correlator.forget(request_id)
        return Answered(arrival.decision, max(arrival.produced_ms - sent_ms, 0.0),
                        max(arrival.received_ms - arrival.produced_ms, 0.0))

    async def send_outcome(self, outcome: dict[str, Any]) -> None:
        assert self._loop is not None, "start() first"
        loop = self._loop
        future: asyncio.Future[None] = loop.create_future()

        def delivered(err: KafkaError | None, msg: Any) -> None:  # the poller's thread
            def settle() -> None:
                if future.done():
                    return
                if err is None:
                    future.set_result(None)
                else:
                    future.set_exception(EngineUnavailable(
                        f"outcome not delivered to Kafka: {err.str()}"))
            loop.call_soon_threadsafe(settle)

        self._produce(self._outcomes, outcome["customer_id"], outcome, delivered)
        try:
            await asyncio.wait_for(future, 35.0)  # message.timeout.ms reports first
        except TimeoutError:
            raise EngineUnavailable("outcome not acknowledged by Kafka within 35 s") from None

    def in_flight(self, request_id: str) -> bool:
        return self.correlator.waiting(request_id)
