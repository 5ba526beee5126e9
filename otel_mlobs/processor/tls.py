"""TLS for the processor's ports, from one certificate, key and optional client CA.

The same PEM files serve OTLP/gRPC (``grpc.ssl_server_credentials``) and the two aiohttp ports
(an ``ssl.SSLContext``), so a client trusts one CA for all three. With a client CA the server
requires a client certificate signed by it (mutual TLS) on every port: the handshake fails for
anyone else, before any request is read.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from otel_mlobs.processor.auth import SecurityConfig


def _read(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"Invalid {setting!r}: cannot read {path!r}: {exc}") from None


def grpc_credentials(security: SecurityConfig) -> grpc.ServerCredentials | None:
    """Server credentials for the gRPC port, ``None`` without TLS."""
    if not security.tls:
        return None
    assert security.tls_cert is not None and security.tls_key is not None
    # Build the aiohttp context too: it validates the PEM files with a clear error, which
    # grpc would only report as a failed bind.
    server_context(security)
    cert = _read(security.tls_cert, "tls_cert")
    key = _read(security.tls_key, "tls_key")
    ca = _read(security.tls_client_ca, "tls_client_ca") if security.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def server_context(security: SecurityConfig) -> ssl.SSLContext | None:
    """The ``ssl.SSLContext`` for the HTTP ports, ``None`` without TLS."""
    if not security.tls:
        return None
    assert security.tls_cert is not None and security.tls_key is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(security.tls_cert, security.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"Invalid 'tls_cert'/'tls_key': cannot load {security.tls_cert!r} with "
            f"{security.tls_key!r}: {exc}"
        ) from None
    if security.tls_client_ca:
        try:
            context.load_verify_locations(cafile=security.tls_client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"Invalid 'tls_client_ca': cannot load {security.tls_client_ca!r}: {exc}"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
