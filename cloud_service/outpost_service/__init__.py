"""``outpost_service``: the Outpost cloud service.

A Flask API (:func:`create_app`) over a SQL store, publishing tasks to RabbitMQ and ingesting
results from it (:class:`IngestConsumer`).  Run it with ``outpost-service serve``.
"""

from outpost_service.app import create_app
from outpost_service.broker.ingest import IngestConsumer
from outpost_service.config import ServiceConfig
from outpost_service.errors import ApiError, ServiceError

__all__ = ["ApiError", "IngestConsumer", "ServiceConfig", "ServiceError", "create_app"]
