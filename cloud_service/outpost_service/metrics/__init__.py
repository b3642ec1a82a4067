"""Prometheus metrics of the service (``GET /metrics``, docs/deployment in deployment/README.md).

Two kinds of figures:

* **recorded** by the code as things happen (:mod:`.instruments`): request latency per route,
  results ingested and their age, long-polls waiting.  With ``PROMETHEUS_MULTIPROC_DIR`` set
  (several API or ingest processes on one machine) prometheus_client's multiprocess mode keeps
  them in files of that folder and any process's ``/metrics`` reports the sum of all of them;
  without it they live in this process's memory.
* **read** when scraped (:mod:`.collectors`): tasks by state (one grouped count in the
  database) and queue depths (RabbitMQ's management API), each cached a few seconds so that
  scrapers, however many, cost the database and the broker little.

:mod:`.exposition` renders both and hooks request timing into the app.
"""

from outpost_service.metrics.exposition import install, render

__all__ = ["install", "render"]
