"""stream_app: a Kafka-native engine for real-time customer engagement.

Imports point one way: ``stream_app.worker`` (Faust plumbing) -> ``stream_app.core`` (decision
core) -> ``stream_app.policies`` / ``profile`` / ``rules`` / ``models``. Nothing below the worker
imports faust, aiokafka or confluent_kafka.
"""

__version__ = "0.1.0"
