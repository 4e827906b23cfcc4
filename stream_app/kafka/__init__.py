"""Kafka plumbing: the local broker, topic administration. Never imported by the decision core."""
