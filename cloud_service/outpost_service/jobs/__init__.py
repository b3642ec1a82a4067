"""Service jobs: the work the service does on its own, outside any request.

:mod:`.ingest` stores what endpoints report (results and heartbeats) and wakes the long-polls
waiting for them; :mod:`.sweep` republishes tasks RabbitMQ never confirmed and fails expired
ones.  They use the broker but are not broker code: the consumer that feeds ingest from its
queue is :mod:`outpost_service.broker.ingest`.
"""
