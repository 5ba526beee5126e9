"""Bearer-token authentication for the processor's ports.

The processor has three surfaces: OTLP/gRPC and OTLP/HTTP (spans in), and the API port
(``/metrics``, ``/healthz``, ``/api/v1``). With a token configured, every request to them must
carry ``Authorization: Bearer <token>`` (gRPC: the ``authorization`` metadata key, which is what
``OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>`` sends). Refusals are answered the
way each protocol expects, before the body is parsed:

* gRPC: status ``UNAUTHENTICATED``;
* HTTP: ``401`` with ``WWW-Authenticate: Bearer realm="mlobs"`` (plus ``error="invalid_token"``
  when a token was sent but is wrong, as RFC 6750 asks).

``/metrics`` may use its own token (Prometheus scrapes with ``authorization: {credentials: ...}``)
or be left open with ``metrics_open``; ``/healthz`` is always open, since liveness probes carry no
credentials and it says nothing but "ok". Tokens are compared in constant time: both sides are
hashed to SHA-256 first, so neither content nor length leaks through timing, and every configured
token is compared (a token file may list several, one per line, to roll tokens without downtime).

Every refusal is counted in ``mlobs_processor_auth_failures_total{endpoint, reason}``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from otel_mlobs.processor.analyzers.base import Metric
from otel_mlobs.processor.privacy import read_key

REALM = "mlobs"
MISSING = "missing"
INVALID = "invalid"
ENDPOINTS = ("otlp_grpc", "otlp_http", "api", "metrics")
MIN_TOKEN_CHARS = 16  # shorter tokens are refused: they can be guessed over the network
AUTH_FAILURES = "mlobs_processor_auth_failures_total"


def read_tokens(path: str, setting: str) -> tuple[str, ...]:
    """Tokens from a file, one per line; blank lines and ``#`` comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"Invalid {setting!r}: cannot read {path!r}: {exc}") from None
    tokens = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    if not tokens:
        raise ValueError(f"Invalid {setting!r}: {path!r} holds no token")
    return tokens


def _check_token(token: str, setting: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(
            f"Invalid {setting!r}: a token needs at least {MIN_TOKEN_CHARS} characters "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    if any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError(f"Invalid {setting!r}: a token must not contain spaces or control chars")
    return token


@dataclass
class SecurityConfig:
    """Who may talk to the processor: tokens and TLS, all off by default.

    ``auth_token`` / ``auth_token_file`` protect OTLP and the API (both may be given: every
    token is accepted). ``/metrics`` uses ``metrics_token`` / ``metrics_token_file`` when set,
    else the API tokens, or nothing when ``metrics_open``. ``tls_cert`` + ``tls_key`` (PEM files)
    serve every port over TLS; ``tls_client_ca`` additionally requires client certificates
    signed by that CA (mutual TLS). ``hash_identifiers`` stores identifier-like columns as
    digests keyed with ``id_hash_key_file`` (a random per-process key when unset; see
    :mod:`otel_mlobs.processor.privacy`). Files are read once, at start-up.
    """

    auth_token: str | None = None
    auth_token_file: str | None = None
    metrics_token: str | None = None
    metrics_token_file: str | None = None
    metrics_open: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    hash_identifiers: bool = True
    id_hash_key_file: str | None = None
    id_hash_key: bytes | None = field(init=False, default=None, repr=False)
    api_tokens: tuple[str, ...] = field(init=False, default=(), repr=False)
    scrape_tokens: tuple[str, ...] = field(init=False, default=(), repr=False)

    def __post_init__(self) -> None:
        api = self._tokens(self.auth_token, self.auth_token_file, "auth_token")
        scrape = self._tokens(self.metrics_token, self.metrics_token_file, "metrics_token")
        if self.metrics_open and scrape:
            raise ValueError("Invalid 'metrics_open': a metrics token is set as well")
        self.api_tokens = api
        self.scrape_tokens = () if self.metrics_open else (scrape or api)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("Invalid TLS settings: 'tls_cert' and 'tls_key' go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("Invalid 'tls_client_ca': mutual TLS needs 'tls_cert' and 'tls_key'")
        if self.id_hash_key_file is not None:
            self.id_hash_key = read_key(self.id_hash_key_file)
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"Invalid {name!r}: {path!r} is not a readable file")

    @staticmethod
    def _tokens(token: str | None, path: str | None, setting: str) -> tuple[str, ...]:
        out: list[str] = []
        if token is not None:
            out.append(_check_token(token, setting))
        if path is not None:
            out.extend(_check_token(t, setting + "_file") for t in read_tokens(path, setting))
        return tuple(dict.fromkeys(out))

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def mutual_tls(self) -> bool:
        return self.tls_client_ca is not None

    def __repr__(self) -> str:  # never print a token
        return (
            f"SecurityConfig(auth={'on' if self.api_tokens else 'off'}, "
            f"metrics_auth={'on' if self.scrape_tokens else 'off'}, tls={self.tls}, "
            f"mutual_tls={self.mutual_tls}, hash_identifiers={self.hash_identifiers})"
        )


class TokenSet:
    """The tokens one surface accepts; an empty set lets everyone in."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = tuple(_digest(t) for t in tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, authorization: str | None) -> str | None:
        """``None`` when allowed, else the reason (:data:`MISSING` or :data:`INVALID`)."""
        if not self._digests:
            return None
        if not authorization:
            return MISSING
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return INVALID
        offered = _digest(credentials.strip())
        ok = False
        for digest in self._digests:  # no early exit: the time does not depend on which matched
            ok |= hmac.compare_digest(offered, digest)
        return None if ok else INVALID


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def challenge(reason: str) -> str:
    """The ``WWW-Authenticate`` header value for a refusal."""
    if reason == INVALID:
        return f'Bearer realm="{REALM}", error="invalid_token"'
    return f'Bearer realm="{REALM}"'


class AuthFailures:
    """Thread-safe refusal counts by (endpoint, reason), exported as a counter family."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, endpoint: str, reason: str) -> None:
        with self._lock:
            self._counts[endpoint, reason] += 1

    def get(self, endpoint: str, reason: str | None = None) -> int:
        with self._lock:
            return sum(
                n for (e, r), n in self._counts.items() if e == endpoint and reason in (None, r)
            )

    def metrics(self) -> list[Metric]:
        with self._lock:
            counts = dict(self._counts)
        return [
            Metric(
                AUTH_FAILURES,
                "counter",
                "Requests refused for a missing or invalid bearer token, by endpoint "
                "(otlp_grpc|otlp_http|api|metrics) and reason (missing|invalid).",
                {"endpoint": e, "reason": r},
                float(n),
            )
            for (e, r), n in sorted(counts.items())
        ]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the ports on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, security: SecurityConfig) -> str | None:
    """A warning when the ports are reachable from the network with no token or no TLS."""
    if is_loopback(host):
        return None
    missing = []
    if not security.api_tokens:
        missing.append(
            "no auth token (--auth-token-file): anyone who reaches the ports can "
            "send spans, read the API and flag outputs"
        )
    if not security.tls:
        missing.append(
            "no TLS (--tls-cert/--tls-key): tokens and data cross the network in clear text"
        )
    if not missing:
        return None
    return f"listening on {host}, beyond this machine, with " + "; and ".join(missing)


# --- enforcement on each transport ------------------------------------------------------------


class GrpcAuthInterceptor(grpc.ServerInterceptor):
    """Refuses calls without a valid bearer token before their message is parsed."""

    def __init__(
        self, tokens: TokenSet, failures: AuthFailures, on_refusal: Callable[[], None]
    ) -> None:
        self._tokens = tokens
        self._failures = failures
        self._on_refusal = on_refusal

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        metadata = handler_call_details.invocation_metadata or ()  # type: ignore[attr-defined]
        header = next((v for k, v in metadata if k == "authorization"), None)
        reason = self._tokens.check(header if isinstance(header, str) else None)
        if reason is None:
            return continuation(handler_call_details)
        self._failures.add("otlp_grpc", reason)
        self._on_refusal()
        message = _refusal_message(reason)

        def refuse(request: bytes, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        # No request deserializer: an unauthenticated body is never parsed.
        return grpc.unary_unary_rpc_method_handler(refuse)


def _refusal_message(reason: str) -> str:
    if reason == MISSING:
        return "missing bearer token (send 'authorization: Bearer <token>')"
    return "invalid bearer token"


def api_middleware(api: TokenSet, scrape: TokenSet, failures: AuthFailures) -> Any:
    """aiohttp middleware for the API port: ``/metrics`` checks ``scrape``, ``/healthz`` is open,
    every other path (unknown ones too, so routes are not revealed) checks ``api``."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        endpoint = "metrics" if request.path == "/metrics" else "api"
        reason = (scrape if endpoint == "metrics" else api).check(
            request.headers.get("Authorization")
        )
        if reason is None:
            return await handler(request)
        failures.add(endpoint, reason)
        return web.json_response(
            {"error": _refusal_message(reason)},
            status=401,
            headers={"WWW-Authenticate": challenge(reason)},
        )

    return authenticate
