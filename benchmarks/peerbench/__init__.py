"""tracekit against its peers (benchmarks/peers.py), one module per figure.

- `workload`: the cases, the recorded bodies (tests/cassettes), the SDK clients;
- `variants`: each variant's instrumentation, flush and read-back, its environment;
- `environment`: `.bench-venv/`, versions, the MLflow server, stalled destinations;
- `plan`: the run's sizes and targets, and `Context`, which runs the children;
- the figures, each with its child, its `measure` (parent) and `summarize` (report):
  `latency` (with import + autolog and the first call), `check`, `cpu`, `memory`,
  `process_exit`; `profiling` for `--profile`;
- `report`: a saved results file -> docs/benchmarks.md and its chart.

What the other benchmarks share (hotpath.py) is re-exported here.
"""

from peerbench.variants import child_env, setup
from peerbench.workload import BATCH, CASES, CASSETTES, Clients, load_cassettes

__all__ = ["BATCH", "CASES", "CASSETTES", "Clients", "child_env", "load_cassettes", "setup"]
