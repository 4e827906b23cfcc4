"""The decision core: plain Python + numpy, no Kafka, deterministic given a seed."""
