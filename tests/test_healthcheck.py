"""``mlobs healthcheck`` probes the processor as it is configured: plain, TLS, mutual TLS."""

from __future__ import annotations

import pytest
from _processor import running
from test_security import Pki, pki  # noqa: F401 - the module-scoped certificate fixture

from otel_mlobs.cli import main
from otel_mlobs.processor.auth import SecurityConfig


def probe(
    monkeypatch: pytest.MonkeyPatch, capsys, port: int, env: dict[str, str], *extra: str
) -> tuple[int, str]:
    for name in ("MLOBS_TLS_CERT", "MLOBS_TLS_CLIENT_CA", "MLOBS_CLIENT_CERT", "MLOBS_CLIENT_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLOBS_METRICS_PORT", str(port))
    code = main(["healthcheck", *extra])
    return code, capsys.readouterr().err


def test_plain_processor_is_healthy_and_a_stopped_one_is_not(monkeypatch, capsys):
    with running() as proc:
        port = proc.ports.metrics
        assert probe(monkeypatch, capsys, port, {}) == (0, "")
    code, err = probe(monkeypatch, capsys, port, {}, "--timeout", "1")
    assert code == 1
    assert f"cannot reach http://127.0.0.1:{port}/healthz" in err


def test_tls_processor_is_probed_over_https_pinning_its_own_certificate(
    monkeypatch,
    capsys,
    pki: Pki,  # noqa: F811
):
    security = SecurityConfig(tls_cert=pki.server_cert, tls_key=pki.server_key)
    with running(security=security) as proc:
        port = proc.ports.metrics
        env = {"MLOBS_TLS_CERT": pki.server_cert}
        assert probe(monkeypatch, capsys, port, env) == (0, "")
        # A plain-HTTP probe (what a fixed healthcheck would do) gets no health answer.
        code, err = probe(monkeypatch, capsys, port, {}, "--timeout", "2")
        assert code == 1 and "healthz" in err
        # Pinning some other certificate fails verification instead of trusting anything.
        code, err = probe(monkeypatch, capsys, port, {"MLOBS_TLS_CERT": pki.client_cert})
        assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in err


def test_mutual_tls_needs_a_client_certificate_and_says_so(monkeypatch, capsys, pki: Pki):  # noqa: F811
    security = SecurityConfig(
        tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca
    )
    env = {"MLOBS_TLS_CERT": pki.server_cert, "MLOBS_TLS_CLIENT_CA": pki.ca}
    with running(security=security) as proc:
        port = proc.ports.metrics
        code, err = probe(monkeypatch, capsys, port, env)
        assert code == 2 and "MLOBS_CLIENT_CERT" in err
        with_cert = {
            **env,
            "MLOBS_CLIENT_CERT": pki.client_cert,
            "MLOBS_CLIENT_KEY": pki.client_key,
        }
        assert probe(monkeypatch, capsys, port, with_cert) == (0, "")
        rogue = {**env, "MLOBS_CLIENT_CERT": pki.rogue_cert, "MLOBS_CLIENT_KEY": pki.rogue_key}
        code, err = probe(monkeypatch, capsys, port, rogue, "--timeout", "2")
        assert code == 1


def test_bad_arguments_are_named(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exc:
        probe(monkeypatch, capsys, 9464, {}, "--timeout", "-1")
    assert exc.value.code == 2
    assert "not a positive number of seconds" in capsys.readouterr().err
    code, err = probe(monkeypatch, capsys, 9464, {"MLOBS_TLS_CERT": "/nonexistent.pem"})
    assert code == 2 and "cannot load the TLS files" in err
