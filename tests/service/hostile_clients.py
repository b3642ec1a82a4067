"""Hostile HTTP clients on raw sockets, for the fair-service test and benchmark.

Raw sockets instead of ``requests`` in threads: hundreds of them cost no thread here, and a
half-sent request is something ``requests`` cannot make.
"""

from __future__ import annotations

import json
import selectors
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Hostile:
    """Open sockets: waiting long-polls and half-sent requests; close them with :meth:`close`."""

    long_polls: list[socket.socket] = field(default_factory=list)
    half_sent: list[socket.socket] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.long_polls + self.half_sent:
            sock.close()


def _connect(url: str, tls: ssl.SSLContext | None = None) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    if parts.scheme == "https":
        assert tls is not None, "an https:// URL needs the SSL context that trusts it"
        return tls.wrap_socket(sock, server_hostname=parts.hostname)
    return sock


def long_poll_request(token: str, task_ids: list[str], wait: float = 60) -> bytes:
    body = json.dumps({"task_ids": task_ids, "wait": wait}).encode()
    head = (
        "POST /v1/results HTTP/1.1\r\nHost: outpost\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def open_long_polls(
    url: str, token: str, task_ids: list[str], count: int, tls: ssl.SSLContext | None = None
) -> list[socket.socket]:
    """``count`` connections, each with one complete 60-second long-poll sent, unread."""
    sockets = []
    for _ in range(count):
        sock = _connect(url, tls)
        sock.sendall(long_poll_request(token, task_ids))
        sockets.append(sock)
    return sockets


def open_half_sent(url: str, count: int) -> list[socket.socket]:
    """``count`` connections that sent part of a request and then nothing (slowloris): half
    stop inside the headers, half inside a body they announced as 100 kB."""
    sockets = []
    for i in range(count):
        sock = _connect(url)
        if i % 2:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: outpost\r\nX-Slow: ")
        else:
            sock.sendall(
                b"POST /v1/results HTTP/1.1\r\nHost: outpost\r\nContent-Type: application/json"
                b'\r\nContent-Length: 100000\r\n\r\n{"task_ids": ['
            )
        sockets.append(sock)
    return sockets


def hostile_load(url: str, token: str, task_ids: list[str], polls: int, half: int) -> Hostile:
    return Hostile(open_long_polls(url, token, task_ids, polls), open_half_sent(url, half))


def status_lines(sockets: list[socket.socket], count: int, timeout: float) -> list[str]:
    """Read responses from ``sockets`` until ``count`` of them have answered (or ``timeout``
    seconds pass): the status line and the body of each answer, in arrival order."""
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytes] = {}
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        buffers[sock] = b""
    answers: list[str] = []
    deadline = time.monotonic() + timeout
    while len(answers) < count and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(65536)
            except ssl.SSLWantReadError:  # a TLS record not complete yet
                continue
            if isinstance(sock, ssl.SSLSocket):
                while sock.pending():  # decrypted bytes the selector cannot see
                    chunk += sock.recv(sock.pending())
            buffers[sock] += chunk
            head, sep, body = buffers[sock].partition(b"\r\n\r\n")
            if not chunk or (sep and _complete(head, body)):
                answers.append(buffers[sock].decode(errors="replace"))
                selector.unregister(sock)
    selector.close()
    return answers


def _complete(head: bytes, body: bytes) -> bool:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True
