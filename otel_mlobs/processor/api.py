"""The read-only HTTP side: Prometheus ``/metrics``, ``/healthz`` and a small JSON query API.

==============================================  =============================================
``GET /metrics``                                Prometheus text (or OpenMetrics if asked)
``GET /healthz``                                200 ``ok`` while the receivers are up, else 503
``GET /api/v1/status``                          counters, queue, known keys per analyzer
``GET /api/v1/analyzers``                       registered analyzers and their keys
``GET /api/v1/analyzers/{name}?pipeline=&...``  that analyzer's ``query()`` for one key
``POST /api/v1/flags`` ``{"pointer": ...}``      flag a bad output on the analyzers that know it
``POST /api/v1/analyzers/{name}/alerts/{id}``   a verdict ``{"true_positive": bool}`` on an alert
==============================================  =============================================

``/api/v1/analyzers/{name}`` takes ``pipeline``, ``component`` and ``model`` to name the key
(empty when omitted) and passes any other query parameter to ``query(**params)``. An unknown
analyzer or key is a 404 whose JSON lists what is known. Other methods get 405. Request bodies
over 64 KiB get 413. With auth on (docs/security.md) every path but ``/healthz`` needs the bearer
token (``/metrics`` its own, if configured) and answers 401 without it. The two writes answer
once a checkpoint holds them (``"durable": true``; false when the processor keeps no state).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web
from prometheus_client.exposition import choose_encoder

from otel_mlobs.processor.auth import TokenSet, api_middleware
from otel_mlobs.processor.records import Key
from otel_mlobs.processor.router import describe

if TYPE_CHECKING:
    from otel_mlobs.processor.service import Processor

_KEY_PARAMS = ("pipeline", "component", "model")
MAX_BODY_BYTES = 64 * 1024


def jsonable(obj: Any) -> Any:
    """Plain JSON types only: numpy to Python, NaN/inf to null, bytes to base64."""
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, Key):
        return obj.labels()
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, bytes | bytearray):
        return base64.b64encode(obj).decode("ascii")
    if is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(asdict(obj))
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    return str(obj)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(jsonable(data)), content_type="application/json"
    )


class ApiServer:
    """Handlers over a running :class:`~otel_mlobs.processor.service.Processor`."""

    def __init__(self, processor: Processor) -> None:
        self._p = processor

    def app(self) -> web.Application:
        security = self._p.config.security
        auth = api_middleware(
            TokenSet(security.api_tokens), TokenSet(security.scrape_tokens), self._p.auth_failures
        )
        # client_max_size: the only body accepted here is a small JSON flag; larger ones get 413.
        app = web.Application(middlewares=[auth], client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/api/v1/status", self.status)
        app.router.add_get("/api/v1/analyzers", self.analyzers)
        app.router.add_get("/api/v1/analyzers/{name}", self.analyzer)
        app.router.add_post("/api/v1/flags", self.flag)
        app.router.add_post("/api/v1/analyzers/{name}/alerts/{alert_id}", self.verdict)
        return app

    async def _off_loop(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` on the executor: it takes the state lock, which the worker may hold."""
        return await asyncio.get_running_loop().run_in_executor(self._p.executor, fn, *args)

    async def metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = await self._off_loop(encoder, self._p.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        if self._p.healthy:
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready")

    async def status(self, request: web.Request) -> web.Response:
        return json_response(await self._off_loop(self._p.status))

    async def analyzers(self, request: web.Request) -> web.Response:
        keys = await self._off_loop(self._locked_keys)
        listing = describe(self._p.router.analyzers)
        for entry in listing:
            entry["keys"] = keys[entry["name"]]
        return json_response({"analyzers": listing})

    def _locked_keys(self) -> dict[str, list[Key]]:
        with self._p.lock:
            return self._p.router.keys()

    async def analyzer(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        params = dict(request.query)
        key = Key(*(params.pop(p, "") for p in _KEY_PARAMS))
        return await self._off_loop(self._query, name, key, params)

    def _query(self, name: str, key: Key, params: dict[str, str]) -> web.Response:
        router = self._p.router
        with self._p.lock:
            if router.analyzer_class(name) is None:
                known = sorted(router.keys())
                return json_response(
                    {"error": f"unknown analyzer {name!r}", "known_analyzers": known}, 404
                )
            instance = router.get(name, key)
            if instance is None:
                return json_response(
                    {
                        "error": f"analyzer {name!r} has no state for {key.labels()}",
                        "known_keys": router.keys()[name],
                    },
                    404,
                )
            try:
                result = instance.query(**params)
            except (TypeError, ValueError) as exc:
                return json_response({"error": f"bad query for {name!r}: {exc}"}, 400)
            return json_response(result)

    async def flag(self, request: web.Request) -> web.Response:
        """Flag an output pointer as bad on every analyzer instance that offers ``flag()``."""
        try:
            body = await request.json()
            pointer = str(body["pointer"]).strip()
            pipeline = str(body.get("pipeline") or "")
        except (ValueError, KeyError, TypeError, AttributeError):
            return json_response({"error": 'expected a JSON body {"pointer": "..."}'}, 400)
        if not pointer:
            return json_response({"error": "empty pointer"}, 400)
        return await self._off_loop(self._flag, pointer, pipeline)

    async def verdict(self, request: web.Request) -> web.Response:
        """A person's verdict on an alert: the analyzer behind it adjusts (``mark_alert``).

        Alerts are judged where they were raised, so the key (``pipeline``, ``component``,
        ``model`` query parameters) names the analyzer instance, as for GET.
        """
        try:
            body = await request.json()
            true_positive = body["true_positive"]
        except (ValueError, KeyError, TypeError):
            expected = 'expected a JSON body {"true_positive": true|false}'
            return json_response({"error": expected}, 400)
        if not isinstance(true_positive, bool):
            return json_response({"error": "true_positive must be true or false"}, 400)
        name, alert_id = request.match_info["name"], request.match_info["alert_id"]
        key = Key(*(request.query.get(p, "") for p in _KEY_PARAMS))
        return await self._off_loop(self._verdict, name, key, alert_id, true_positive)

    def _saved(self, result: Any) -> Any:
        """``result`` of a write, once the state holding it is durable.

        Writes are not in the write-ahead log (it holds export requests), so a write forces a
        checkpoint before it is answered: acknowledged means it survives a crash. Writes are
        rare and made by people, so the checkpoint's cost does not matter. ``durable`` says
        whether that worked (false without persistence, or when the checkpoint failed: then it
        is counted, and the next checkpoint saves the write).
        """
        persistence = self._p.persistence
        durable = persistence is not None and persistence.checkpoint(force=True)
        return {**result, "durable": durable} if isinstance(result, dict) else result

    def _verdict(self, name: str, key: Key, alert_id: str, true_positive: bool) -> web.Response:
        with self._p.lock:
            instance = self._p.router.get(name, key)
            mark = getattr(instance, "mark_alert", None)
            if mark is None:
                return json_response(
                    {"error": f"no analyzer {name!r} that takes verdicts for {key.labels()}"}, 404
                )
            try:
                result = mark(alert_id, true_positive)
            except KeyError:
                return json_response({"error": f"unknown alert {alert_id!r} on {name!r}"}, 404)
        return json_response(self._saved(result))

    def _flag(self, pointer: str, pipeline: str) -> web.Response:
        known: list[str] = []
        with self._p.lock:
            for instance in self._p.router.instances():
                flag = getattr(instance, "flag", None)
                if flag is None or (pipeline and instance.key.pipeline != pipeline):
                    continue
                try:
                    result = flag(pointer)
                except KeyError as exc:
                    known.extend(getattr(exc, "known", []))
                    continue
                break
            else:
                result = None
        if result is not None:
            return json_response(self._saved(result))
        return json_response(
            {"error": f"unknown pointer {pointer!r}", "known": sorted(set(known))[:20]}, 404
        )
