"""The runtime the service and the endpoint share: plumbing written once.

What the SDK, the service and the endpoint share and the protocol must not contain (it stays
free of transports): the AMQP connection with publisher confirms (``amqp_connection``,
``amqp_confirms``), one retry backoff (``backoff``), the HTTP transport (``http``), private
atomic file writes (``files``), the settings helpers of both configurations (``settings``) and
the CLIs' shared pieces (``cli``, ``lazy``).  Credentials are resolved in one place,
:mod:`outpost.credentials`.  The SDK's client side
(``outpost.client``, ``outpost.executor``, ``outpost.cli``) uses only the parts that need no
broker library; the import contracts in ``pyproject.toml`` keep it so.
"""
