"""CurveZMQ keys for the interchange ↔ manager link, made fresh at every engine start.

Choice: the keys reach the managers as files in the engine's run directory (``curve/``, mode
0600, directory 0700), whose path is on the manager's command line.  On a cluster the run
directory lives in the user's home (``~/.outpost/endpoints/NAME/run``), which the compute nodes
mount, and only the user can read it; keys on a command line would be visible to every user in
``ps``.  The interchange accepts only the one client key of this start (ZAP check), so a manager
of an earlier start, or anyone who merely knows the server's public key, is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from outpost.runtime.files import write_private

if TYPE_CHECKING:  # the server side only: managers need not import its asyncio machinery
    import zmq.auth.thread

SERVER_PUBLIC = "server.public"
CLIENT_PUBLIC = "client.public"
CLIENT_SECRET = "client.secret"


@dataclass(frozen=True)
class CurveKeys:
    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes


def generate() -> CurveKeys:
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    return CurveKeys(server_public, server_secret, client_public, client_secret)


def write_client_files(keys: CurveKeys, directory: Path) -> Path:
    """Write what a manager needs (server public key, its own keypair) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for name, value in (
        (SERVER_PUBLIC, keys.server_public),
        (CLIENT_PUBLIC, keys.client_public),
        (CLIENT_SECRET, keys.client_secret),
    ):
        write_private(directory / name, value, durable=False)
    return directory


def read_client_files(directory: Path) -> tuple[bytes, bytes, bytes]:
    """``(server public, client public, client secret)`` as written by
    :func:`write_client_files`."""
    return tuple(  # type: ignore[return-value]
        (directory / name).read_bytes().strip()
        for name in (SERVER_PUBLIC, CLIENT_PUBLIC, CLIENT_SECRET)
    )


class _OnlyThisClient:
    def __init__(self, client_public: bytes) -> None:
        self.client_public = client_public

    def callback(self, domain: str, key: bytes) -> bool:
        # pyzmq's authenticator hands the client's key over in Z85 text, as curve_keypair makes it
        return key == self.client_public


def secure_server(
    context: zmq.Context[zmq.Socket[bytes]], socket: zmq.Socket[bytes], keys: CurveKeys
) -> zmq.auth.thread.ThreadAuthenticator:
    """Make ``socket`` a CURVE server that admits only ``keys.client_public``; returns the
    running authenticator (stop it when the socket closes)."""
    import zmq.auth.thread

    auth = zmq.auth.thread.ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve_callback(
        domain="*", credentials_provider=_OnlyThisClient(keys.client_public)
    )
    socket.curve_secretkey = keys.server_secret
    socket.curve_publickey = keys.server_public
    socket.curve_server = True
    return auth


def secure_client(
    socket: zmq.Socket[bytes], server_public: bytes, public: bytes, secret: bytes
) -> None:
    socket.curve_serverkey = server_public
    socket.curve_publickey = public
    socket.curve_secretkey = secret
