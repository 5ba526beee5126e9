"""``mlobs healthcheck``: the container's liveness probe, from the processor's own settings.

A probe that always speaks plain HTTP breaks the moment an operator turns TLS on, and marks a
healthy processor unhealthy. This one reads the variables the processor itself was started
with (``MLOBS_METRICS_PORT``, ``MLOBS_TLS_CERT``, ``MLOBS_TLS_CLIENT_CA``), so the same image
probes correctly in every configuration:

* without TLS it asks ``http://127.0.0.1:<port>/healthz``;
* with TLS it speaks HTTPS and trusts exactly the processor's own certificate (the file it
  serves), so no CA bundle has to be mounted for the probe and nothing else is trusted;
* with mutual TLS it must present a client certificate: ``--client-cert``/``--client-key``
  (``MLOBS_CLIENT_CERT``/``MLOBS_CLIENT_KEY``, the variables ``mlobs suspects`` and the other
  query commands read), signed by the client CA.

``/healthz`` needs no token, so none is sent. Standard library only: a probe runs every few
seconds and must start fast. Exit 0 when the processor answers 200 ``ok``, 1 when it does not,
2 when the probe itself is misconfigured.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.error
import urllib.request

from otel_mlobs.cli import env_option, non_empty, port, positive_seconds

EXIT_UNHEALTHY = 1
EXIT_USAGE = 2


class ProbeError(Exception):
    """The probe cannot be made as configured (exit 2), as opposed to a failed probe."""


def probe_context(
    tls_cert: str | None, client_ca: str | None, client_cert: str | None, client_key: str | None
) -> ssl.SSLContext | None:
    """The TLS context matching the processor's settings; ``None`` when it serves plain HTTP."""
    if not tls_cert:
        return None
    if bool(client_cert) != bool(client_key):
        raise ProbeError("--client-cert and --client-key go together")
    if client_ca and not client_cert:
        raise ProbeError(
            "the processor requires mutual TLS (MLOBS_TLS_CLIENT_CA is set): give the probe a "
            "client certificate signed by that CA with --client-cert/--client-key or "
            "MLOBS_CLIENT_CERT/MLOBS_CLIENT_KEY"
        )
    try:
        ctx = ssl.create_default_context(cafile=tls_cert)
        # Trust the processor's own leaf certificate as an anchor: the probe pins exactly the
        # certificate the processor serves, whoever signed it.
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        # The name is not checked: the pinned certificate is the identity, and it need not
        # carry 127.0.0.1 among its names.
        ctx.check_hostname = False
        if client_cert:
            ctx.load_cert_chain(client_cert, client_key)
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(f"cannot load the TLS files: {exc}") from None
    return ctx


def check(url: str, context: ssl.SSLContext | None, timeout_s: float) -> str:
    """Ask ``url``; returns ``""`` when healthy, else what was wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as resp:  # noqa: S310
            body = resp.read(64).decode("utf-8", "replace").strip()
            if resp.status == 200 and body == "ok":
                return ""
            return f"{url} answered {resp.status} {body!r}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code} {exc.read(200).decode('utf-8', 'replace').strip()!r}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"cannot reach {url}: {reason}"


def run(args: argparse.Namespace) -> int:
    tls_cert = os.environ.get("MLOBS_TLS_CERT") or None
    client_ca = os.environ.get("MLOBS_TLS_CLIENT_CA") or None
    try:
        context = probe_context(tls_cert, client_ca, args.client_cert, args.client_key)
    except ProbeError as exc:
        print(f"mlobs healthcheck: {exc}", file=sys.stderr)
        return EXIT_USAGE
    scheme = "https" if context is not None else "http"
    problem = check(f"{scheme}://{args.host}:{args.metrics_port}/healthz", context, args.timeout)
    if problem:
        print(f"mlobs healthcheck: unhealthy: {problem}", file=sys.stderr)
        return EXIT_UNHEALTHY
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "healthcheck",
        help="probe a local processor's /healthz the way it is configured (for containers)",
        description="Probe a local processor's /healthz over HTTP, or HTTPS when MLOBS_TLS_CERT "
        "is set. Exit 0 healthy, 1 unhealthy, 2 misconfigured.",
    )
    env_option(p, "--metrics-port", type=port, default=9464, help="the processor's API port")
    p.add_argument("--host", default="127.0.0.1", help="address to probe (default 127.0.0.1)")
    env_option(
        p,
        "--client-cert",
        type=non_empty,
        metavar="PEM",
        help="client certificate, when the processor requires mutual TLS",
    )
    env_option(p, "--client-key", type=non_empty, metavar="PEM", help="key of --client-cert")
    p.add_argument("--timeout", type=positive_seconds, default=4.0, help="seconds (default 4)")
    p.set_defaults(func=run)
