"""``mlobs trace|history|suspects|delays|alerts|flag|review``: ask a running processor.

Every command reads the processor's JSON API (``--url``, else ``MLOBS_URL``, else
http://127.0.0.1:9464) and prints a readable table; ``--json`` prints the raw answer for
scripts. A processor with auth on wants its token (``--token``, else ``MLOBS_TOKEN``); one
serving TLS with a private CA wants ``--cacert`` (and ``--client-cert``/``--client-key`` for
mutual TLS). An unknown component or pointer is an error that lists what the processor knows; a
processor that cannot be reached is a clear message and exit code 3.

Exit codes: 0 ok, 1 the processor refused the query (unknown name, bad parameter), 2 bad
command line, 3 the processor is unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from otel_mlobs.cli import env_option, non_empty

DEFAULT_URL = "http://127.0.0.1:9464"
ROOT_CAUSES = "root_causes"
STUCK_FEEDBACK = "stuck_feedback"
EXIT_REFUSED, EXIT_UNREACHABLE = 1, 3


class QueryError(Exception):
    """The processor answered with an error, or could not be reached (``code`` says which)."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


# --- HTTP -------------------------------------------------------------------------------------


class Client:
    """The few API calls the commands need, with errors turned into :class:`QueryError`."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        *,
        token: str | None = None,
        cacert: str | None = None,
        client_cert: tuple[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._tls: dict[str, Any] = {}
        if cacert:
            self._tls["verify"] = cacert
        if client_cert:
            self._tls["cert"] = client_cert

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        import requests

        try:
            resp = requests.request(
                method,
                self.url + path,
                timeout=self.timeout,
                headers=self._headers,
                **self._tls,
                **kw,
            )
        except requests.RequestException as exc:
            raise QueryError(
                f"cannot reach the processor at {self.url} ({type(exc).__name__}); is "
                "`mlobs processor` running? Point --url or MLOBS_URL at it.",
                EXIT_UNREACHABLE,
            ) from None
        try:
            body = resp.json()
        except ValueError:
            body = {"error": resp.text.strip()[:500]}
        if resp.status_code == 401:
            hint = "pass --token or set MLOBS_TOKEN" if not self._headers else "check the token"
            raise QueryError(
                f"the processor refused the request: {_error_text(body, 401)} ({hint})"
            )
        if resp.status_code >= 400:
            raise QueryError(_error_text(body, resp.status_code))
        return body

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        return self._call("GET", path, params=clean)

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        return self._call("POST", path, json=payload)

    def keys(self, analyzer: str) -> list[dict[str, str]]:
        listing = self.get("/api/v1/analyzers")
        for entry in listing.get("analyzers", []):
            if entry.get("name") == analyzer:
                return list(entry.get("keys", []))
        known = [e.get("name") for e in listing.get("analyzers", [])]
        raise QueryError(f"the processor runs no {analyzer!r} analyzer; it runs: {known}")

    def query(self, analyzer: str, key: dict[str, str], **params: Any) -> dict[str, Any]:
        return self.get(f"/api/v1/analyzers/{analyzer}", **key, **params)


def _error_text(body: Any, status: int) -> str:
    if isinstance(body, dict):
        text = str(body.get("error", body))
        for field in ("known", "known_keys", "known_analyzers"):
            if body.get(field):
                text += f"\nknown: {body[field]}"
        return text
    return f"HTTP {status}: {body}"


def _pipeline_keys(client: Client, analyzer: str, pipeline: str | None) -> list[dict[str, str]]:
    keys = client.keys(analyzer)
    if pipeline:
        chosen = [k for k in keys if k.get("pipeline") == pipeline]
        if not chosen:
            known = sorted({k.get("pipeline", "") for k in keys})
            raise QueryError(f"unknown pipeline {pipeline!r}; known pipelines: {known}")
        return chosen
    if not keys:
        raise QueryError(f"the processor has no {analyzer} state yet: no pipeline has reported")
    return keys


# --- formatting -------------------------------------------------------------------------------


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain fixed-width table, long cells cut at 60 characters."""
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.3g}"
    elif value is None:
        text = "-"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M")


# --- commands ---------------------------------------------------------------------------------


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def cmd_suspects(args: argparse.Namespace, client: Client) -> None:
    answers = [
        client.query(ROOT_CAUSES, k, view="suspects", at=args.at, k=args.k)
        for k in _pipeline_keys(client, ROOT_CAUSES, args.pipeline)
    ]
    parts = []
    for a in answers:
        rows = []
        for s in a["suspects"]:
            evidence = "; ".join(e for c in s["columns"][:2] for e in c["evidence"][:1]) or "-"
            rows.append(
                [
                    s["rank"],
                    s["component"],
                    s["group"],
                    s["group_size"],
                    s["score"],
                    s["zeta"],
                    evidence,
                ]
            )
        head = f"pipeline {a['pipeline']}: suspects as of {a.get('at_iso') or a.get('now_iso')}"
        parts.append(
            head
            + "\n"
            + table(rows, ["rank", "component", "group", "columns", "score", "zeta", "evidence"])
        )
        if a.get("cycles"):
            parts.append(
                "lineage cycles (ignored for ranking): "
                + "; ".join(" -> ".join(c) for c in a["cycles"])
            )
    _emit(args, answers if len(answers) > 1 else answers[0], "\n\n".join(parts))


def _tree(node: dict[str, Any], depth: int, out: list[str]) -> None:
    stale = f"  STALE: {'; '.join(node['stale'])}" if node.get("stale") else ""
    elided = " (shown above)" if node.get("elided") else ""
    out.append(
        f"{'  ' * depth}{node['pointer'] or '(link)'} <- {node['component']} run "
        f"{node['run_id']} at {when(node['event_time'])}"
        f"{'' if node['ok'] else ' FAILED'}{elided}{stale}"
    )
    for parent in node.get("parents", []):
        _tree(parent, depth + 1, out)


def cmd_trace(args: argparse.Namespace, client: Client) -> None:
    errors = []
    for key in _pipeline_keys(client, ROOT_CAUSES, args.pipeline):
        try:
            answer = client.query(ROOT_CAUSES, key, view="trace", pointer=args.pointer)
        except QueryError as exc:
            if exc.code != EXIT_REFUSED:
                raise
            errors.append(str(exc))
            continue
        lines: list[str] = []
        _tree(answer["trace"], 0, lines)
        _emit(args, answer, f"pipeline {answer['pipeline']}\n" + "\n".join(lines))
        return
    raise QueryError("\n".join(errors))


def cmd_history(args: argparse.Namespace, client: Client) -> None:
    errors = []
    for key in _pipeline_keys(client, ROOT_CAUSES, args.pipeline):
        try:
            a = client.query(ROOT_CAUSES, key, view="history", of=args.component, limit=args.limit)
        except QueryError as exc:
            if exc.code != EXIT_REFUSED:
                raise
            errors.append(str(exc))
            continue
        runs = [
            [
                when(r["event_time"]),
                r["run_id"],
                "ok" if r["ok"] else "FAILED",
                ", ".join(r["outputs"]) or "-",
                "; ".join(r["stale"]) or "-",
            ]
            for r in a["runs"]
        ]
        worst = sorted(a["columns"], key=lambda c: -c["zeta"])[:10]
        cols = [
            [
                c["column"],
                c["zeta"],
                c["corruption"],
                c["staleness"],
                "; ".join(c["evidence"]) or "-",
            ]
            for c in worst
        ]
        text = (
            f"pipeline {a['pipeline']}, component {a['component']} ({a['stage'] or '?'})\n"
            + table(runs, ["time", "run", "status", "outputs", "stale"])
            + "\n\ncolumns with the highest error scores (latest run)\n"
            + table(cols, ["column", "zeta", "corruption", "staleness", "evidence"])
        )
        _emit(args, a, text)
        return
    raise QueryError("\n".join(errors))


def cmd_review(args: argparse.Namespace, client: Client) -> None:
    answers = [
        client.query(ROOT_CAUSES, k, view="review", k=args.k)
        for k in _pipeline_keys(client, ROOT_CAUSES, args.pipeline)
    ]
    parts = []
    for a in answers:
        rows = [
            [
                r["rank"],
                r["component"],
                r["run_id"],
                when(r["event_time"]),
                r["flagged_outputs"],
                "; ".join(r["stale"]) or "-",
            ]
            for r in a["review"]
        ]
        parts.append(
            f"pipeline {a['pipeline']}: {len(a['flags'])} flagged output(s)\n"
            + table(rows, ["rank", "component", "run", "time", "flagged", "stale"])
        )
    _emit(args, answers if len(answers) > 1 else answers[0], "\n\n".join(parts))


def cmd_flag(args: argparse.Namespace, client: Client) -> None:
    answer = client.post("/api/v1/flags", {"pointer": args.pointer, "pipeline": args.pipeline})
    _emit(
        args,
        answer,
        f"flagged {args.pointer}: {answer.get('runs_in_lineage', '?')} run(s) "
        "in its lineage; `mlobs review` ranks them",
    )


def cmd_delays(args: argparse.Namespace, client: Client) -> None:
    keys = _pipeline_keys(client, STUCK_FEEDBACK, args.pipeline)
    if args.model:
        keys = [k for k in keys if k.get("model") == args.model]
        if not keys:
            raise QueryError(
                f"unknown model {args.model!r}; known models: "
                f"{sorted({k.get('model') for k in client.keys(STUCK_FEEDBACK)})}"
            )
    answers = [client.query(STUCK_FEEDBACK, k) for k in keys]
    parts = []
    for a in answers:
        rows = [
            [p["rank"], p["pattern"], p["coverage"], p["lift"], p["overdue_sampled"]]
            for p in a["patterns"]
        ]
        head = (
            f"pipeline {a['pipeline']}, model {a.get('model', '')}: "
            f"{a['overdue_sampled']} of {a['sampled']} sampled predictions overdue "
            f"(after {a['overdue_after_s'] / 3600:.1f} h without feedback)"
        )
        body = (
            table(rows, ["rank", "pattern", "coverage", "lift", "overdue"])
            if rows
            else "no stuck-feedback pattern: overdue predictions are as usual"
        )
        parts.append(head + "\n" + body)
    _emit(args, answers if len(answers) > 1 else answers[0], "\n\n".join(parts))


def cmd_alerts(args: argparse.Namespace, client: Client) -> None:
    listing = client.get("/api/v1/analyzers")
    alerts: list[dict[str, Any]] = []
    for entry in listing.get("analyzers", []):
        if entry["name"] in (ROOT_CAUSES, STUCK_FEEDBACK):
            continue
        for key in entry.get("keys", []):
            if args.pipeline and key.get("pipeline") != args.pipeline:
                continue
            try:
                answer = client.query(entry["name"], key, constraints="false")
            except QueryError as exc:
                if exc.code != EXIT_REFUSED:
                    raise
                continue
            for alert in answer.get("alerts", []) if isinstance(answer, dict) else []:
                alerts.append({"analyzer": entry["name"], **alert})
    alerts.sort(key=lambda a: (-float(a.get("last_event_time") or 0), a.get("severity", "")))
    rows = [
        [
            when(a.get("last_event_time")),
            a.get("severity"),
            a.get("component"),
            a.get("dataset"),
            ",".join(a.get("columns", [])),
            a.get("check"),
            a.get("explanation"),
        ]
        for a in alerts
    ]
    text = (
        table(rows, ["time", "severity", "component", "dataset", "columns", "check", "explanation"])
        if rows
        else "no active alerts"
    )
    _emit(args, {"alerts": alerts}, text)


COMMANDS = {
    "suspects": (cmd_suspects, "ranked root causes with their evidence"),
    "trace": (cmd_trace, "lineage of an output pointer back through the runs that made it"),
    "history": (cmd_history, "recent runs of a component and its columns' error scores"),
    "delays": (cmd_delays, "where feedback is stuck: patterns of overdue predictions"),
    "alerts": (cmd_alerts, "active alerts of the diagnose analyzers"),
    "flag": (cmd_flag, "flag an output as bad (feeds `mlobs review`)"),
    "review": (cmd_review, "runs that appear most often in the lineage of flagged outputs"),
}


def add_connection_options(p: argparse.ArgumentParser) -> None:
    """``--url``, ``--token`` and the TLS files, each backed by its ``MLOBS_`` variable."""
    env_option(p, "--url", type=non_empty, default=DEFAULT_URL, help="processor API base URL")
    env_option(
        p,
        "--token",
        type=non_empty,
        metavar="TOKEN",
        help="bearer token of a processor with auth on (prefer the variable: command "
        "lines are visible to other local users)",
    )
    env_option(
        p,
        "--cacert",
        type=non_empty,
        metavar="PEM",
        help="CA that signed the processor's TLS certificate",
    )
    env_option(
        p,
        "--client-cert",
        type=non_empty,
        metavar="PEM",
        help="client certificate, for a processor requiring mutual TLS",
    )
    env_option(p, "--client-key", type=non_empty, metavar="PEM", help="key of --client-cert")


def client_from_args(args: argparse.Namespace) -> Client:
    """The :class:`Client` the connection options describe."""
    if bool(args.client_cert) != bool(args.client_key):
        raise QueryError("--client-cert and --client-key go together", 2)
    cert = (args.client_cert, args.client_key) if args.client_cert else None
    return Client(args.url, token=args.token, cacert=args.cacert, client_cert=cert)


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, (fn, help_text) in COMMANDS.items():
        p = subparsers.add_parser(name, help=help_text, description=help_text + ".")
        add_connection_options(p)
        p.add_argument("--pipeline", default=None, help="pipeline (default: every known one)")
        p.add_argument("--json", action="store_true", help="print the raw JSON answer")
        if name == "suspects":
            p.add_argument(
                "--at",
                default=None,
                metavar="TIME",
                help="rank as of this event time (epoch seconds or ISO 8601)",
            )
            p.add_argument("-k", type=int, default=5, help="suspects to show")
        elif name in ("trace", "flag"):
            p.add_argument("pointer", help="an output pointer (URI or sha256:...)")
        elif name == "history":
            p.add_argument("component")
            p.add_argument("--limit", type=int, default=10, help="runs to show")
        elif name == "review":
            p.add_argument("-k", type=int, default=10, help="runs to show")
        elif name == "delays":
            p.add_argument("--model", default=None, help="model (default: every known one)")
        p.set_defaults(func=_runner(fn))


def _runner(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            fn(args, client_from_args(args))
        except QueryError as exc:
            print(f"mlobs {args.command}: {exc}", file=sys.stderr)
            return exc.code
        return 0

    return run
