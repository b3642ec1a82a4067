"""The runtime the service and the endpoint share: plumbing written once.

What both long-running sides need and the protocol must not contain (it stays free of
transports): the AMQP connection with publisher confirms and one reconnect backoff, the HTTP
transport and credential resolution, private atomic file writes.  The SDK's client side
(``outpost.client``, ``outpost.executor``, ``outpost.cli``) uses only the parts that need no
broker library; the import contracts in ``pyproject.toml`` keep it so.
"""
