"""``riskstream bench``: riskstream side by side with the alternatives, on one broker, in one run.

* :mod:`worker.tools.bench.harness`: the sweep over offered loads and how each point is measured.
* :mod:`worker.tools.bench.loops`: the load generator, the relay ceiling and the naive baseline, each run
  as its own process by ``python -m worker.tools.bench``.
* :mod:`worker.tools.bench.report`: results, ``bench.json``, ``bench.md`` and ``p99_vs_load.png``.
"""
