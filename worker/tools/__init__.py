"""The tools around the worker: what people run next to it, never part of the running pipeline.

* :mod:`worker.tools.demo` — ``riskstream demo``: broker, model, a synthetic stream and live scores.
* :mod:`worker.tools.produce` — ``riskstream produce``: the load generator (synthetic or a file).
* :mod:`worker.tools.verify` — ``riskstream verify``: reconcile inputs with their outcomes.
* :mod:`worker.tools.bench` — ``riskstream bench``: riskstream beside the alternatives, on one broker.
* :mod:`worker.tools.kit` — what the tools and the tests share: worker processes, read_committed
  readers, an outcome collector, the paced sender, a broker handle.
* :mod:`worker.tools.kafka_local` — a real Apache Kafka broker on this machine, without Docker.

The container image ships only the pipeline (``.dockerignore`` leaves this package out): nothing
under ``worker`` outside this package imports it.
"""
