"""Bearer tokens and TLS on every port, read-only API, request size limits.

Certificates are generated here (a CA, a server certificate for localhost, a client certificate
and one from a CA the server does not trust); spans come from the real SDK and travel through the
real OTLP exporters.
"""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import zlib
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
import requests
from _otlp import request, run_span, summary_event
from _processor import api, grpc_export, post_traces, running, scrape, value
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.rpc import code_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_mlobs.sdk as mlobs
from otel_mlobs.cli import main
from otel_mlobs.processor.api import ApiServer
from otel_mlobs.processor.auth import (
    INVALID,
    MISSING,
    SecurityConfig,
    TokenSet,
    challenge,
    exposure_warning,
    is_loopback,
)
from otel_mlobs.processor.service import Processor

TOKEN = "s3cret-token-0123456789abcdef"
OTHER = "s3cret-token-0123456789abcdeX"  # same length, one character off
SCRAPE = "prometheus-scrape-token-9876543210"
BEARER = {"authorization": f"Bearer {TOKEN}"}
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


# --- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    rogue_cert: str  # a client certificate from a CA the server does not trust
    rogue_key: str

    def read(self, name: str) -> bytes:
        return Path(getattr(self, name)).read_bytes()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple | None,
    *,
    ca: bool,
    usage: x509.ObjectIdentifier | None = None,
    san: list | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    signer_name, signer_key = issuer if issuer else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, rogue_ca_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _issue("mlobs test CA", ca_key, None, ca=True)
    rogue_ca = _issue("someone else's CA", rogue_ca_key, None, ca=True)
    ca_path, _ = _write(d / "ca", ca, ca_key)
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("server", "client", "rogue")}
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = _issue(
        "localhost",
        keys["server"],
        (ca.subject, ca_key),
        ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=san,
    )
    client = _issue(
        "pipeline",
        keys["client"],
        (ca.subject, ca_key),
        ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    rogue = _issue(
        "pipeline",
        keys["rogue"],
        (rogue_ca.subject, rogue_ca_key),
        ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    return Pki(
        ca_path,
        *_write(d / "server", server, keys["server"]),
        *_write(d / "client", client, keys["client"]),
        *_write(d / "rogue", rogue, keys["rogue"]),
    )


# --- spans from the real SDK ------------------------------------------------------------------


@pytest.fixture(scope="module")
def spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mlobs.configure(pipeline="secure", tracer_provider=provider)
    try:
        rng = np.random.default_rng(0)
        frame = pd.DataFrame({"x": rng.normal(size=200), "zone": rng.choice(["a", "b"], 200)})
        with mlobs.observe("features", stage="features", event_time=1_700_000_000.0) as run:
            run.log_output("features", frame)
        ids = np.array([f"p{i}" for i in range(50)])
        mlobs.log_predictions(
            "tip", ids, scores=rng.uniform(size=50), timestamps=np.full(50, 1_700_000_000.0)
        )
    finally:
        mlobs.shutdown()
        provider.shutdown()
    out = list(exporter.get_finished_spans())
    assert len(out) >= 2
    return out


def _accepted(proc: Processor) -> float:
    assert proc.wait_idle(timeout=30)
    return proc.registry.get_sample_value("mlobs_processor_spans_accepted_total") or 0.0


def _auth_failures(proc: Processor, endpoint: str, reason: str) -> float:
    return proc.auth_failures.get(endpoint, reason)


def _secure(**kw) -> SecurityConfig:
    return SecurityConfig(auth_token=TOKEN, **kw)


# --- tokens -----------------------------------------------------------------------------------


def test_token_set_accepts_only_a_bearer_of_a_configured_token():
    tokens = TokenSet([TOKEN, SCRAPE])
    assert tokens.check(f"Bearer {TOKEN}") is None
    assert tokens.check(f"bearer   {SCRAPE} ") is None  # the scheme is case-insensitive
    assert tokens.check(None) == MISSING
    assert tokens.check("") == MISSING
    assert tokens.check(f"Bearer {OTHER}") == INVALID
    assert tokens.check(f"Basic {TOKEN}") == INVALID
    assert tokens.check(TOKEN) == INVALID  # no scheme
    assert tokens.check(f"Bearer {TOKEN}x") == INVALID  # a longer token is not a match
    assert tokens.check("Bearer ") == INVALID
    assert TokenSet(()).check(None) is None  # no tokens: auth off
    assert challenge(MISSING) == 'Bearer realm="mlobs"'
    assert challenge(INVALID) == 'Bearer realm="mlobs", error="invalid_token"'


def test_security_config_reads_token_files_and_validates(tmp_path: Path, pki: Pki):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# rolled on Monday\n{TOKEN}\n\n{OTHER}\n")
    cfg = SecurityConfig(auth_token_file=str(tokens))
    assert cfg.api_tokens == (TOKEN, OTHER) and cfg.scrape_tokens == (TOKEN, OTHER)
    assert TOKEN not in repr(cfg) and "auth=on" in repr(cfg)
    assert SecurityConfig(auth_token=TOKEN, metrics_token=SCRAPE).scrape_tokens == (SCRAPE,)
    assert SecurityConfig(auth_token=TOKEN, metrics_open=True).scrape_tokens == ()
    assert SecurityConfig().api_tokens == ()
    (tmp_path / "empty").write_text("# nothing\n")
    bad = [
        ({"auth_token": "short"}, "at least 16"),
        ({"auth_token": "has a space in it!!"}, "spaces"),
        ({"auth_token_file": str(tmp_path / "missing")}, "cannot read"),
        ({"auth_token_file": str(tmp_path / "empty")}, "holds no token"),
        ({"metrics_token": SCRAPE, "metrics_open": True}, "metrics_open"),
        ({"tls_cert": pki.server_cert}, "go together"),
        ({"tls_client_ca": pki.ca}, "mutual TLS"),
        ({"tls_cert": str(tmp_path / "nope.crt"), "tls_key": pki.server_key}, "tls_cert"),
        ({"id_hash_key_file": str(tmp_path / "empty")}, "at least 16"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            SecurityConfig(**kwargs)


def test_exposure_warning_only_beyond_loopback(pki: Pki):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert exposure_warning("127.0.0.1", SecurityConfig()) is None
    warning = exposure_warning("0.0.0.0", SecurityConfig())
    assert "no auth token" in warning and "no TLS" in warning
    tls_only = SecurityConfig(tls_cert=pki.server_cert, tls_key=pki.server_key)
    assert "no auth token" in exposure_warning("0.0.0.0", tls_only)
    both = SecurityConfig(auth_token=TOKEN, tls_cert=pki.server_cert, tls_key=pki.server_key)
    assert exposure_warning("0.0.0.0", both) is None


# --- OTLP/gRPC --------------------------------------------------------------------------------


def test_grpc_refuses_missing_and_wrong_tokens_before_parsing_and_counts_them():
    req = request(run_span(events=[summary_event(2)]))
    with running(security=_secure()) as proc:
        channel = grpc.insecure_channel(f"127.0.0.1:{proc.ports.grpc}")
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        raw = channel.unary_unary(EXPORT)  # bytes in, bytes out
        try:
            wrong = [("authorization", f"Bearer {OTHER}")]
            basic = [("authorization", f"Basic {TOKEN}")]
            refusals = [
                lambda: stub.Export(req, timeout=5),
                lambda: stub.Export(req, timeout=5, metadata=wrong),
                lambda: stub.Export(req, timeout=5, metadata=basic),
                lambda: raw(b"\xff not protobuf", timeout=5),  # never parsed: still 401-like
            ]
            for call in refusals:
                with pytest.raises(grpc.RpcError) as err:
                    call()
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in err.value.details()
            stub.Export(req, timeout=5, metadata=list(BEARER.items()))
        finally:
            channel.close()
        assert _auth_failures(proc, "otlp_grpc", MISSING) == 2
        assert _auth_failures(proc, "otlp_grpc", INVALID) == 2
        assert _accepted(proc) == 1
        metrics = scrape_with(proc, TOKEN)
        assert (
            value(
                metrics, "mlobs_processor_requests_total", transport="grpc", code="UNAUTHENTICATED"
            )
            == 4
        )
        assert value(metrics, "mlobs_processor_requests_total", transport="grpc", code="OK") == 1
        assert (
            value(
                metrics,
                "mlobs_processor_auth_failures_total",
                endpoint="otlp_grpc",
                reason="missing",
            )
            == 2
        )


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_real_exporters_with_the_token_are_accepted_without_it_refused(transport, spans):
    with running(security=_secure()) as proc:

        def exporter(headers):
            if transport == "grpc":
                return GrpcExporter(
                    endpoint=f"127.0.0.1:{proc.ports.grpc}",
                    insecure=True,
                    headers=headers,
                    timeout=5,
                )
            return HttpExporter(
                endpoint=f"http://127.0.0.1:{proc.ports.http}/v1/traces", headers=headers, timeout=5
            )

        for headers in (None, {"authorization": f"Bearer {OTHER}"}):
            refused = exporter(headers)
            assert refused.export(spans) is SpanExportResult.FAILURE
            refused.shutdown()
        accepted = exporter(BEARER)
        assert accepted.export(spans) is SpanExportResult.SUCCESS
        accepted.shutdown()
        assert _accepted(proc) == len(spans)
        endpoint = "otlp_grpc" if transport == "grpc" else "otlp_http"
        assert _auth_failures(proc, endpoint, MISSING) == 1
        assert _auth_failures(proc, endpoint, INVALID) == 1


def test_sdk_configure_sends_the_token_over_grpc_even_with_a_capitalized_header(spans):
    from otel_mlobs.sdk.setup import make_exporter

    with running(security=_secure()) as proc:
        exporter = make_exporter(
            endpoint=f"http://127.0.0.1:{proc.ports.grpc}",
            protocol="grpc",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        exporter.shutdown()
        assert _accepted(proc) == len(spans)


# --- OTLP/HTTP --------------------------------------------------------------------------------


def test_http_answers_401_with_a_bearer_challenge_before_reading_the_body():
    body = request(run_span(events=[summary_event(2)])).SerializeToString()
    with running(security=_secure()) as proc:
        url = f"http://127.0.0.1:{proc.ports.http}/v1/traces"
        proto = {"Content-Type": "application/x-protobuf"}
        missing = requests.post(url, data=body, headers=proto, timeout=10)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="mlobs"'
        status = status_pb2.Status.FromString(missing.content)
        assert status.code == code_pb2.UNAUTHENTICATED
        wrong = requests.post(
            url,
            data=b"{not json",
            timeout=10,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {OTHER}"},
        )
        assert wrong.status_code == 401  # not 400: the body was never parsed
        assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
        assert wrong.json()["code"] == code_pb2.UNAUTHENTICATED
        ok = requests.post(
            url, data=body, timeout=10, headers={**proto, "Authorization": f"Bearer {TOKEN}"}
        )
        assert ok.status_code == 200
        assert _accepted(proc) == 1
        metrics = scrape_with(proc, TOKEN)
        assert value(metrics, "mlobs_processor_requests_total", transport="http", code="401") == 2
        assert _auth_failures(proc, "otlp_http", MISSING) == 1
        assert _auth_failures(proc, "otlp_http", INVALID) == 1


# --- API and /metrics -------------------------------------------------------------------------


def scrape_with(proc: Processor, token: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    response = api(proc, "/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def test_api_needs_the_token_metrics_its_own_and_healthz_none():
    with running(security=_secure(metrics_token=SCRAPE)) as proc:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert api(proc, "/healthz").status_code == 200
        for path in (
            "/api/v1/status",
            "/api/v1/analyzers",
            "/api/v1/analyzers/runs",
            "/no/such/path",
        ):
            refused = api(proc, path)
            assert refused.status_code == 401, path  # unknown paths too: routes stay hidden
            assert refused.headers["WWW-Authenticate"] == 'Bearer realm="mlobs"'
        assert api(proc, "/api/v1/status", headers=auth).status_code == 200
        assert api(proc, "/no/such/path", headers=auth).status_code == 404
        flag = {"pointer": "sha256:abc"}
        assert api(proc, "/api/v1/flags", "POST", json=flag).status_code == 401
        assert api(proc, "/api/v1/flags", "POST", json=flag, headers=auth).status_code == 404
        assert api(proc, "/metrics", headers=auth).status_code == 401  # the API token is not it
        assert api(proc, "/metrics").status_code == 401
        metrics = scrape_with(proc, SCRAPE)
        assert (
            value(metrics, "mlobs_processor_auth_failures_total", endpoint="api", reason="missing")
            == 5
        )
        assert (
            value(
                metrics, "mlobs_processor_auth_failures_total", endpoint="metrics", reason="invalid"
            )
            == 1
        )
        assert (
            value(
                metrics, "mlobs_processor_auth_failures_total", endpoint="metrics", reason="missing"
            )
            == 1
        )


def test_metrics_open_leaves_only_metrics_and_healthz_unauthenticated():
    with running(security=_secure(metrics_open=True)) as proc:
        assert scrape(proc)  # no token needed
        assert api(proc, "/api/v1/status").status_code == 401


# The documented writes (docs/security.md): flag an output, give a verdict on an alert.
WRITABLE = {("POST", "/api/v1/flags"), ("POST", "/api/v1/analyzers/{name}/alerts/{alert_id}")}


def test_api_is_read_only_except_the_documented_writes():
    with running(security=_secure()) as proc:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        app = ApiServer(proc).app()
        paths: dict[str, str] = {}  # concrete path -> route pattern
        for route in app.router.routes():
            pattern = route.resource.canonical
            assert route.method in ("GET", "HEAD") or (route.method, pattern) in WRITABLE, route
            paths[pattern.replace("{name}", "runs").replace("{alert_id}", "a1")] = pattern
        assert set(paths) >= {"/metrics", "/healthz", "/api/v1/status", "/api/v1/flags"}
        for path, pattern in sorted(paths.items()):
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                if (method, pattern) in WRITABLE:
                    assert api(proc, path, method, json={}).status_code == 401  # token needed
                    assert api(proc, path, method, json={}, headers=auth).status_code != 401
                    continue
                got = api(proc, path, method, headers=auth, json={"pointer": "x"})
                assert got.status_code == 405, (method, path, got.status_code)
        assert api(proc, "/api/v1/flags", headers=auth).status_code == 405


# --- size limits and decompression bombs ------------------------------------------------------


def test_size_limits_and_decompression_bombs_are_refused_and_counted():
    limit = 256 * 1024
    big = request(run_span(name="x" * (4 * 1024 * 1024), events=[summary_event(2)]))
    big_body = big.SerializeToString()  # 4 MiB, compresses to a few KiB
    with running(max_request_bytes=limit) as proc:
        assert post_traces(proc, big_body).status_code == 413
        gz = gzip.compress(big_body)
        assert len(gz) < limit // 10
        assert post_traces(proc, gz, encoding="gzip").status_code == 413
        assert post_traces(proc, zlib.compress(big_body), encoding="deflate").status_code == 413
        huge_flag = {"pointer": "p" * (100 * 1024)}
        assert api(proc, "/api/v1/flags", "POST", json=huge_flag).status_code == 413
        with grpc.insecure_channel(
            f"127.0.0.1:{proc.ports.grpc}", compression=grpc.Compression.Gzip
        ) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Export(big, timeout=10)  # small on the wire, 4 MiB inflated
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        small = request(run_span(events=[summary_event(2)]))
        assert grpc_export(proc, small).partial_success.rejected_spans == 0  # still serving
        assert post_traces(proc, small.SerializeToString()).status_code == 200
        metrics = scrape(proc)
        assert value(metrics, "mlobs_processor_requests_total", transport="http", code="413") == 3
        assert _accepted(proc) == 2


# --- TLS and mutual TLS -----------------------------------------------------------------------


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_tls_serves_every_port_and_mutual_tls_requires_a_trusted_client(
    mutual, pki, spans, monkeypatch, capsys
):
    security = _secure(
        tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca if mutual else None
    )
    client = (pki.client_cert, pki.client_key) if mutual else None
    # requests lets these variables override a session's CA, which is how the HTTP exporter
    # passes certificate_file: with them set, the exporter would not trust our CA.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with running(security=security) as proc:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki.read("ca"),
            private_key=pki.read("client_key") if mutual else None,
            certificate_chain=pki.read("client_cert") if mutual else None,
        )
        grpc_exporter = GrpcExporter(
            endpoint=f"localhost:{proc.ports.grpc}",
            insecure=False,
            credentials=credentials,
            headers=BEARER,
            timeout=5,
        )
        http_exporter = HttpExporter(
            endpoint=f"https://localhost:{proc.ports.http}/v1/traces",
            certificate_file=pki.ca,
            client_certificate_file=client[0] if client else None,
            client_key_file=client[1] if client else None,
            headers=BEARER,
            timeout=5,
        )
        for exporter in (grpc_exporter, http_exporter):
            assert exporter.export(spans) is SpanExportResult.SUCCESS
            exporter.shutdown()
        assert _accepted(proc) == 2 * len(spans)
        base = f"https://localhost:{proc.ports.metrics}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert (
            requests.get(
                base + "/api/v1/status", headers=auth, verify=pki.ca, cert=client, timeout=10
            ).status_code
            == 200
        )
        with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP on a TLS port
            requests.get(f"http://localhost:{proc.ports.metrics}/healthz", timeout=10)
        with pytest.raises(requests.exceptions.SSLError):  # a server the client cannot verify
            requests.get(base + "/healthz", timeout=10)
        monkeypatch.setenv("MLOBS_TOKEN", TOKEN)
        cli = ["alerts", "--url", base, "--cacert", pki.ca]
        if mutual:
            cli += ["--client-cert", pki.client_cert, "--client-key", pki.client_key]
        assert main(cli) == 0
        assert "no active alerts" in capsys.readouterr().out
        if not mutual:
            return
        # Mutual TLS: no client certificate, or one from another CA, fails the handshake.
        for cert in (None, (pki.rogue_cert, pki.rogue_key)):
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(base + "/healthz", verify=pki.ca, cert=cert, timeout=10)
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.post(
                    f"https://localhost:{proc.ports.http}/v1/traces",
                    data=b"",
                    verify=pki.ca,
                    cert=cert,
                    headers=auth,
                    timeout=10,
                )
            creds = grpc.ssl_channel_credentials(
                root_certificates=pki.read("ca"),
                private_key=Path(cert[1]).read_bytes() if cert else None,
                certificate_chain=Path(cert[0]).read_bytes() if cert else None,
            )
            with grpc.secure_channel(f"localhost:{proc.ports.grpc}", creds) as channel:
                stub = trace_service_pb2_grpc.TraceServiceStub(channel)
                with pytest.raises(grpc.RpcError) as err:
                    stub.Export(request(), timeout=3, metadata=list(BEARER.items()))
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert main(["alerts", "--url", base, "--cacert", pki.ca]) == 3  # unreachable


# --- command line -----------------------------------------------------------------------------


def test_query_commands_send_the_token(monkeypatch, capsys):
    with running(security=_secure()) as proc:
        url = f"http://127.0.0.1:{proc.ports.metrics}"
        monkeypatch.delenv("MLOBS_TOKEN", raising=False)
        assert main(["alerts", "--url", url]) == 1
        assert "--token" in capsys.readouterr().err
        assert main(["alerts", "--url", url, "--token", OTHER]) == 1
        assert "check the token" in capsys.readouterr().err
        monkeypatch.setenv("MLOBS_TOKEN", TOKEN)
        assert main(["alerts", "--url", url]) == 0
        assert main(["flag", "--url", url, "sha256:unknown"]) == 1  # reached the handler: 404
        assert "unknown pointer" in capsys.readouterr().err


def test_processor_command_refuses_bad_security_settings(tmp_path, capsys, caplog):
    assert (
        main(
            [
                "processor",
                "--grpc-port",
                "0",
                "--http-port",
                "0",
                "--metrics-port",
                "0",
                "--auth-token",
                "short",
            ]
        )
        == 2
    )
    assert "at least 16" in caplog.text
    key = tmp_path / "server.key"
    key.write_text("not a key")
    assert (
        main(
            [
                "processor",
                "--grpc-port",
                "0",
                "--http-port",
                "0",
                "--metrics-port",
                "0",
                "--tls-cert",
                str(key),
                "--tls-key",
                str(key),
            ]
        )
        == 2
    )
    assert "cannot load" in caplog.text
    with pytest.raises(SystemExit) as exc:
        main(["processor", "--max-series-per-metric", "1"])
    assert exc.value.code == 2
