"""TLS settings shared by the SDK, the endpoint and the service: which CAs to trust, which
certificate to show, and errors that say which file is wrong and how to fix it.

Why here: the SDK and the endpoint (HTTPS to the service) and the endpoint and the service
(AMQPS to RabbitMQ) must agree on the same settings and defaults, and ``outpost.protocol`` is
the one package all three may import.  Only the standard library's :mod:`ssl` is used, so the
protocol still imports no transport; pika and requests get the contexts and paths built here.

Defaults follow the usual standards: without a CA file the system store is used
(``SSL_CERT_FILE``/``SSL_CERT_DIR`` for :mod:`ssl`, ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
for HTTP through requests), and host names are always checked.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from outpost.errors import ConfigurationError

#: Environment variable naming a CA bundle (PEM) the SDK and the endpoint trust for HTTPS to the
#: service, e.g. the private CA that signed the service's certificate.
CA_BUNDLE_ENV = "OUTPOST_CA_BUNDLE"


@dataclass(frozen=True)
class TlsFiles:
    """Files of a TLS client: CAs to trust and an optional client certificate.

    Empty strings mean "not set": no ``ca_file`` trusts the system store; no ``cert_file`` sends
    no client certificate (only brokers set to ``verify_peer`` with
    ``fail_if_no_peer_cert`` need one).
    """

    #: PEM bundle of CA certificates that may sign the server's certificate.
    ca_file: str = ""
    #: PEM client certificate (chain), sent to servers that ask for one ...
    cert_file: str = ""
    #: ... and its PEM private key (unencrypted).
    key_file: str = ""


def http_verify(explicit: str | bool | None = None) -> str | bool:
    """What ``requests`` should verify HTTPS servers with: ``explicit`` (a CA bundle path, or
    ``False`` to switch checking off), else ``$OUTPOST_CA_BUNDLE``, else ``True`` (requests'
    own default: ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, then its bundled CAs).

    A path is checked now, so a typo fails at start with the file named rather than at the
    first request with an opaque TLS error."""
    if isinstance(explicit, bool):
        return explicit
    source = "the CA bundle option"
    path = explicit
    if not path:
        path, source = os.environ.get(CA_BUNDLE_ENV, ""), CA_BUNDLE_ENV
    if not path:
        return True
    _readable(path, f"CA bundle {path!r} (from {source})", directory_ok=True)
    return path


def client_context(files: TlsFiles, *, peer: str) -> ssl.SSLContext:
    """A client context that verifies ``peer`` (e.g. "RabbitMQ") against ``files.ca_file`` (or
    the system store) with host name checking, and shows ``files.cert_file`` if set."""
    if files.ca_file:
        _readable(files.ca_file, f"CA file {files.ca_file!r} for {peer}", directory_ok=True)
        ca = Path(files.ca_file)
        try:
            context = ssl.create_default_context(
                cafile=None if ca.is_dir() else str(ca), capath=str(ca) if ca.is_dir() else None
            )
        except ssl.SSLError as exc:
            raise ConfigurationError(
                f"CA file {files.ca_file!r} for {peer} holds no PEM certificate ({exc.reason}); "
                "give the CA certificate that signed the server's certificate, in PEM"
            ) from exc
    else:
        context = ssl.create_default_context()
    if files.cert_file or files.key_file:
        _load_chain(context, files.cert_file, files.key_file, f"client certificate for {peer}")
    return context


def amqps_context(url: str, files: TlsFiles | None) -> ssl.SSLContext | None:
    """The client context for an AMQP URL: None for ``amqp://`` (``files`` are ignored) and for
    an ``amqps://`` URL carrying pika's own ``ssl_options`` query argument (older configs: pika
    builds that context); else :func:`client_context` for the URL's host."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "amqps" or "ssl_options" in parse_qs(parts.query):
        return None
    return client_context(files or TlsFiles(), peer=f"RabbitMQ at {parts.hostname}")


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context (TLS 1.2 or newer) showing ``cert_file`` with ``key_file``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, cert_file, key_file, "server certificate")
    return context


def _load_chain(context: ssl.SSLContext, cert_file: str, key_file: str, what: str) -> None:
    if not cert_file or not key_file:
        raise ConfigurationError(
            f"{what}: give both a certificate file and its key file (got certificate "
            f"{cert_file!r}, key {key_file!r})"
        )
    cert_text = _readable(cert_file, f"{what} {cert_file!r}")
    key_text = _readable(key_file, f"key {key_file!r} of the {what}")
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        raise ConfigurationError(
            f"{what} {cert_file!r} is not a PEM certificate (no BEGIN CERTIFICATE line)"
        )
    if "PRIVATE KEY-----" not in key_text:
        raise ConfigurationError(
            f"key {key_file!r} of the {what} is not a PEM private key (no BEGIN ... PRIVATE KEY "
            "line)"
        )
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password(key_file))
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigurationError(
                f"key {key_file!r} does not match the {what} {cert_file!r}; give the private key "
                "the certificate was issued for"
            ) from exc
        raise ConfigurationError(
            f"cannot load the {what} {cert_file!r} with key {key_file!r}: {exc}; both must be "
            "PEM and the key unencrypted"
        ) from exc


def _no_password(key_file: str) -> Callable[[], str]:
    """A password callback would prompt on a terminal for an encrypted key; fail instead."""

    def refuse() -> str:
        raise ConfigurationError(
            f"key {key_file!r} is encrypted; decrypt it (openssl pkey -in KEY -out PLAIN) and "
            "protect the file with permissions instead"
        )

    return refuse


def _readable(path: str, label: str, *, directory_ok: bool = False) -> str:
    """The file's text; a ConfigurationError naming ``label`` if it cannot be read."""
    if directory_ok and Path(path).is_dir():
        return ""
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        raise ConfigurationError(f"{label} does not exist; check the path") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {label}: {exc.strerror or exc}") from None


def tls_failure(exc: BaseException, *, ca_setting: str, cert_setting: str | None) -> str | None:
    """If ``exc`` (or the text it wraps: pika and urllib3 nest errors) is a TLS trust failure,
    a sentence saying what failed and which setting fixes it; else None (e.g. a refused
    connection, which is worth retrying).

    ``ca_setting`` / ``cert_setting`` name the caller's settings, e.g. ``"OUTPOST_CA_BUNDLE"``
    and ``"amqp_cert_file/amqp_key_file in config.yaml"``; ``cert_setting=None`` where client
    certificates are not used (HTTPS), so a handshake cut short stays a retryable error."""
    text = f"{exc!r} {exc}"
    match = re.search(r"certificate verify failed: ([^(')\"]+)", text)
    if match or "CERTIFICATE_VERIFY_FAILED" in text:
        reason = match.group(1).strip() if match else "certificate verify failed"
        return (
            f"certificate verify failed ({reason}): the server's TLS certificate is not trusted "
            f"here; set {ca_setting} to the CA bundle (PEM) that signed it, and connect with a "
            "host name the certificate names"
        )
    if cert_setting is None:
        return None
    if re.search(r"CERTIFICATE_REQUIRED|certificate required|BAD_CERTIFICATE|UNKNOWN_CA", text):
        return (
            "the server refused the TLS handshake because it wants a client certificate signed "
            f"by a CA it trusts; set {cert_setting}"
        )
    if re.search(r"EOF occurred in violation of protocol|UNEXPECTED_EOF", text):
        # With TLS 1.3 the server's "certificate required" alert may arrive after the client
        # considers the handshake done, and then only as a closed connection.
        return (
            "the server closed the connection during the TLS handshake, as a broker that "
            "verifies peers does when it gets no client certificate it trusts; check "
            f"{cert_setting}"
        )
    return None
