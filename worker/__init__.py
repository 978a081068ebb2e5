"""The stream side of riskstream: Kafka source, micro-batcher, admission control, publisher."""
