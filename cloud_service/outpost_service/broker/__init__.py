"""RabbitMQ: the topology (:mod:`.topology`), confirmed publishing (:mod:`.publisher`) and the
result-ingest consumer (:mod:`.ingest`)."""

from outpost_service.broker.publisher import Publisher
from outpost_service.broker.topology import Topology

__all__ = ["Publisher", "Topology"]
