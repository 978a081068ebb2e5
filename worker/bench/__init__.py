"""``riskstream bench``: riskstream side by side with the alternatives, on one broker, in one run.

* :mod:`worker.bench.harness`: the sweep over offered loads and how each point is measured.
* :mod:`worker.bench.loops`: the load generator, the relay ceiling and the naive baseline, each run
  as its own process by ``python -m worker.bench``.
* :mod:`worker.bench.report`: results, ``bench.json``, ``bench.md`` and ``p99_vs_load.png``.
"""
