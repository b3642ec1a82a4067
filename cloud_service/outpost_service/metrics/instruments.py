"""The metrics the service records as things happen (process-wide prometheus_client objects).

prometheus_client picks its storage when a metric is made: files under
``PROMETHEUS_MULTIPROC_DIR`` when that variable is set at process start (multiprocess mode:
every process of the machine writes its own file, a scrape sums them), memory otherwise.  So
this module must be imported after the environment is final -- it is, at app creation.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram

#: Where multiprocess mode keeps its files ("" when it is off).
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")

#: Request latency buckets (seconds): an ordinary request takes milliseconds; a result
#: long-poll may wait up to a minute, so the top buckets keep those apart.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: Result age buckets (seconds): from a worker finishing to ingest committing.
AGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

REQUEST_SECONDS = Histogram(
    "outpost_http_request_duration_seconds",
    "Time from a request's arrival in the app to its answer, by route (the route's rule, "
    "not the raw path), method and status.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
LONGPOLLS_WAITING = Gauge(
    "outpost_longpolls_waiting",
    "Result long-polls waiting for results now (all API processes of this machine in "
    "multiprocess mode).",
    multiprocess_mode="livesum",
)
INGESTED = Counter(
    "outpost_ingest_results",
    "Results ingest committed: outcome 'stored' finished a task, 'duplicate' came for a "
    "task already finished (a redelivery) and changed nothing.",
    ["outcome"],
)
INGEST_FAILURES = Counter(
    "outpost_ingest_store_failures",
    "Batches ingest could not commit (the database away, or a poisonous message); their "
    "messages went back to the queue or, alone and still failing, to the dead-letter queue.",
)
RESULT_AGE = Histogram(
    "outpost_ingest_result_age_seconds",
    "Ingest lag: seconds from a worker finishing a task (the result's timing['finished'], "
    "the endpoint's clock) to ingest committing its result.",
    buckets=AGE_BUCKETS,
)
