"""Static checks of the OpenTelemetry Collector configs in collector/.

No collector binary is available to ``otelcol-contrib validate`` these files, and the collector
rejects unknown keys only at start-up, so a typo would surface in production. This module encodes
the documented configuration keys of every component the configs use, as declared by the
``mapstructure`` tags of the upstream config structs at the pinned release (contrib 0.130.0):

* otlp receiver: ``receiver/otlpreceiver/config.go`` with ``configgrpc.ServerConfig`` and
  ``confighttp.ServerConfig``
* batch, memory_limiter processors: ``processor/batchprocessor/config.go``,
  ``internal/memorylimiter/config.go``
* otlp exporter: ``exporter/otlpexporter/config.go`` with ``configgrpc.ClientConfig``,
  ``exporterhelper`` queue and ``configretry.BackOffConfig``
* loadbalancing exporter: ``exporter/loadbalancingexporter/config.go``
* debug exporter, health_check extension, transform / filter / groupbyattrs processors: their
  ``config.go``

Unknown keys fail; so do pipelines that name undefined components and receivers that do not
listen on all interfaces (a container's localhost is unreachable from its neighbours).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_mlobs import semconv

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = ROOT / "collector" / "gateway.yaml"
LOADBALANCED = ROOT / "collector" / "loadbalanced.yaml"
CONFIGS = [GATEWAY, LOADBALANCED]

LEAF = None  # any value; its inner structure is not checked


@dataclass(frozen=True)
class ListOf:
    """A list whose items each follow ``item``."""

    item: Any


def _keys(*names: str, **nested: Any) -> dict[str, Any]:
    schema: dict[str, Any] = dict.fromkeys(names, LEAF)
    schema.update(nested)
    return schema


# --- shared config blocks (go.opentelemetry.io/collector/config/...) ----------------------------
_TLS_COMMON = (
    "ca_file", "ca_pem", "include_system_ca_certs_pool", "cert_file", "cert_pem", "key_file",
    "key_pem", "min_version", "max_version", "cipher_suites", "reload_interval",
    "curve_preferences",
)  # fmt: skip
TLS_CLIENT = _keys(*_TLS_COMMON, "insecure", "insecure_skip_verify", "server_name_override")
TLS_SERVER = _keys(*_TLS_COMMON, "client_ca_file", "reload_client_ca_file")
AUTH = _keys("authenticator")

GRPC_SERVER = _keys(
    "endpoint", "transport", "max_recv_msg_size_mib", "max_concurrent_streams",
    "read_buffer_size", "write_buffer_size", "include_metadata", "middlewares",
    dialer_config=_keys("timeout"),
    tls=TLS_SERVER,
    auth=AUTH,
    keepalive=_keys(
        server_parameters=_keys(
            "max_connection_idle", "max_connection_age", "max_connection_age_grace", "time",
            "timeout",
        ),
        enforcement_policy=_keys("min_time", "permit_without_stream"),
    ),
)  # fmt: skip

HTTP_SERVER = _keys(
    "endpoint", "max_request_body_size", "include_metadata", "response_headers",
    "compression_algorithms", "read_timeout", "read_header_timeout", "write_timeout",
    "idle_timeout", "keep_alives_enabled", "middlewares",
    tls=TLS_SERVER,
    cors=_keys("allowed_origins", "allowed_headers", "max_age"),
    auth=_keys("authenticator", "request_params"),
)  # fmt: skip

GRPC_CLIENT = _keys(
    "endpoint", "compression", "read_buffer_size", "write_buffer_size", "wait_for_ready",
    "headers", "balancer_name", "authority", "middlewares",
    tls=TLS_CLIENT,
    keepalive=_keys("time", "timeout", "permit_without_stream"),
    auth=AUTH,
)  # fmt: skip

SENDING_QUEUE = _keys(
    "enabled", "wait_for_result", "block_on_overflow", "blocking", "sizer", "queue_size",
    "num_consumers", "storage",
    batch=_keys("flush_timeout", "min_size", "max_size"),
)  # fmt: skip
RETRY = _keys(
    "enabled", "initial_interval", "randomization_factor", "multiplier", "max_interval",
    "max_elapsed_time",
)  # fmt: skip

# --- components --------------------------------------------------------------------------------
OTLP_EXPORTER = {
    **GRPC_CLIENT,
    **_keys("timeout", sending_queue=SENDING_QUEUE, retry_on_failure=RETRY),
}
_OTLP_TEMPLATE = {k: v for k, v in OTLP_EXPORTER.items() if k != "endpoint"}

CONTEXT_STATEMENTS = ListOf(_keys("context", "conditions", "statements", "error_mode"))

RECEIVERS: dict[str, Any] = {
    "otlp": _keys(
        protocols=_keys(
            grpc=GRPC_SERVER,
            http={**HTTP_SERVER, **_keys("traces_url_path", "metrics_url_path", "logs_url_path")},
        )
    ),
}
PROCESSORS: dict[str, Any] = {
    "batch": _keys(
        "timeout", "send_batch_size", "send_batch_max_size", "metadata_keys",
        "metadata_cardinality_limit",
    ),
    "memory_limiter": _keys(
        "check_interval", "limit_mib", "spike_limit_mib", "limit_percentage",
        "spike_limit_percentage", "min_gc_interval_when_soft_limited",
        "min_gc_interval_when_hard_limited",
    ),
    "transform": _keys(
        "error_mode", "flatten_data",
        trace_statements=CONTEXT_STATEMENTS,
        metric_statements=CONTEXT_STATEMENTS,
        log_statements=CONTEXT_STATEMENTS,
        profile_statements=CONTEXT_STATEMENTS,
    ),
    "filter": _keys("error_mode", "spans", "metrics", "logs", traces=_keys("span", "spanevent")),
    "groupbyattrs": _keys("keys"),
}  # fmt: skip
EXPORTERS: dict[str, Any] = {
    "otlp": OTLP_EXPORTER,
    "debug": _keys("verbosity", "sampling_initial", "sampling_thereafter", "use_internal_logger",
                   sending_queue=SENDING_QUEUE),
    "loadbalancing": _keys(
        "timeout", "routing_key", "routing_attributes",
        retry_on_failure=RETRY,
        sending_queue=SENDING_QUEUE,
        protocol=_keys(otlp=_OTLP_TEMPLATE),
        resolver=_keys(
            static=_keys("hostnames"),
            dns=_keys("hostname", "port", "interval", "timeout"),
            k8s=_keys("service", "ports", "timeout", "return_hostnames"),
            aws_cloud_map=_keys(
                "namespace", "service_name", "port", "health_status", "interval", "timeout"
            ),
        ),
    ),
}  # fmt: skip
EXTENSIONS: dict[str, Any] = {
    "health_check": {
        **HTTP_SERVER,
        **_keys(
            "path",
            response_body=_keys("healthy", "unhealthy"),
            check_collector_pipeline=_keys("enabled", "interval", "exporter_failure_threshold"),
        ),
    },
}
CONNECTORS: dict[str, Any] = {}
SECTIONS = {
    "receivers": RECEIVERS,
    "processors": PROCESSORS,
    "exporters": EXPORTERS,
    "extensions": EXTENSIONS,
    "connectors": CONNECTORS,
}
SERVICE = _keys(
    "extensions",
    "pipelines",
    telemetry=_keys("logs", "traces", "resource", metrics=_keys("level", "readers", "views")),
)
LOADBALANCING_ROUTING_KEYS = {"traceID", "service", "resource", "metric", "streamID", "attributes"}
SIGNALS = {"traces", "metrics", "logs"}


# --- the checker ---------------------------------------------------------------------------------
def schema_errors(value: Any, schema: Any, path: str) -> list[str]:
    """Every key under ``value`` that ``schema`` does not document, as a dotted path."""
    if schema is LEAF or value is None:  # `grpc:` with no body is a valid "defaults" block
        return []
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        errors: list[str] = []
        for i, item in enumerate(value):
            errors += schema_errors(item, schema.item, f"{path}[{i}]")
        return errors
    if not isinstance(value, dict):
        return [f"{path}: expected a mapping, got {type(value).__name__}"]
    errors = []
    for key, sub in value.items():
        if key not in schema:
            errors.append(f"{path}.{key}: unknown key (documented: {sorted(schema)})")
        else:
            errors += schema_errors(sub, schema[key], f"{path}.{key}")
    return errors


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def config_errors(cfg: dict[str, Any]) -> list[str]:
    """Unknown keys, unknown component types and dangling references in one collector config."""
    errors = [
        f"{key}: unknown top-level section" for key in cfg if key not in {*SECTIONS, "service"}
    ]
    for section, known in SECTIONS.items():
        for component_id, body in (cfg.get(section) or {}).items():
            kind = component_type(component_id)
            if kind not in known:
                errors.append(f"{section}.{component_id}: component type {kind!r} not checked here")
                continue
            errors += schema_errors(body, known[kind], f"{section}.{component_id}")
    service = cfg.get("service") or {}
    errors += schema_errors(service, SERVICE, "service")

    defined = {section: set(cfg.get(section) or {}) for section in SECTIONS}
    for ext in service.get("extensions") or []:
        if ext not in defined["extensions"]:
            errors.append(f"service.extensions: {ext!r} is not defined")
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        errors.append("service.pipelines: no pipeline")
    for name, pipeline in pipelines.items():
        if component_type(name) not in SIGNALS:
            errors.append(f"service.pipelines.{name}: unknown signal")
        sources = {
            "receivers": defined["receivers"] | defined["connectors"],
            "processors": defined["processors"],
            "exporters": defined["exporters"] | defined["connectors"],
        }
        for role, allowed in sources.items():
            for component_id in pipeline.get(role) or []:
                if component_id not in allowed:
                    errors.append(f"service.pipelines.{name}.{role}: {component_id!r} undefined")
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            errors.append(f"service.pipelines.{name}: needs receivers and exporters")
    return errors


def load(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        return yaml.safe_load(fh)


# --- tests ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_uses_only_documented_keys_and_defined_components(path: Path) -> None:
    assert config_errors(load(path)) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["processors"]["memory_limiter"].update(limit_precentage=80),
         "limit_precentage"),
        (lambda c: c["receivers"]["otlp"]["protocols"]["grpc"].update(max_recv_msg_size=64),
         "max_recv_msg_size"),
        (lambda c: c["exporters"]["otlp/mlobs"]["tls"].update(insecure_skip=True), "insecure_skip"),
        (lambda c: c["service"]["pipelines"]["traces/mlobs"]["processors"].append("batch/typo"),
         "batch/typo"),
        (lambda c: c["exporters"].update({"otlphttp/x": {"endpoint": "http://x"}}), "otlphttp"),
    ],
    ids=["processor-key", "nested-receiver-key", "tls-key", "pipeline-reference", "unknown-type"],
)  # fmt: skip
def test_checker_rejects_typos(mutate: Any, expected: str) -> None:
    cfg = copy.deepcopy(load(GATEWAY))
    mutate(cfg)
    errors = config_errors(cfg)
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_listeners_bind_all_interfaces_on_the_otlp_ports(path: Path) -> None:
    cfg = load(path)
    protocols = cfg["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    for ext_id, ext in cfg["extensions"].items():
        assert ext["endpoint"].startswith("0.0.0.0:"), ext_id
    reader = cfg["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert reader["host"] == "0.0.0.0"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_receive_limits_fit_the_largest_processor_batch(path: Path) -> None:
    """64 MiB in both protocols, and batches towards processors small enough to stay under it."""
    cfg = load(path)
    protocols = cfg["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["max_recv_msg_size_mib"] == 64
    assert protocols["http"]["max_request_body_size"] == 64 * 1024 * 1024
    processor_batches = [
        cfg["processors"][p]
        for pipeline in cfg["service"]["pipelines"].values()
        if "otlp/jaeger" not in pipeline["exporters"]
        for p in pipeline.get("processors", [])
        if component_type(p) == "batch"
    ]
    assert processor_batches
    # A prediction span carries at most MAX_EVENTS_PER_BATCH_SPAN events of MAX_ROWS_PER_EVENT
    # rows; at a generous 32 bytes per row that is ~2.4 MiB, times the batch must fit in 64 MiB.
    span_bytes = semconv.MAX_EVENTS_PER_BATCH_SPAN * semconv.MAX_ROWS_PER_EVENT * 32
    for batch in processor_batches:
        assert batch["send_batch_max_size"] * span_bytes <= 64 * 1024 * 1024


def test_gateway_sends_every_span_to_the_processor_and_the_trace_store() -> None:
    cfg = load(GATEWAY)
    mlobs = cfg["exporters"]["otlp/mlobs"]
    assert mlobs["endpoint"] == "mlobs:4317"
    assert mlobs["tls"]["insecure"] is True
    pipelines = cfg["service"]["pipelines"]
    to_mlobs = [p for p in pipelines.values() if "otlp/mlobs" in p["exporters"]]
    to_store = [p for p in pipelines.values() if "otlp/jaeger" in p["exporters"]]
    assert len(to_mlobs) == 1 and len(to_store) == 1
    for pipeline in (*to_mlobs, *to_store):
        assert pipeline["receivers"] == ["otlp"]
        assert pipeline["processors"][0] == "memory_limiter"
        assert component_type(pipeline["processors"][-1]) == "batch"
    # The processor's copy keeps its row-level arrays: nothing strips it.
    assert not any(component_type(p) == "transform" for p in to_mlobs[0]["processors"])


def test_loadbalanced_routes_each_span_by_pipeline_and_model() -> None:
    """The invariants that make routing per span, so predictions and feedback meet."""
    cfg = load(LOADBALANCED)
    lb = cfg["exporters"]["loadbalancing"]
    assert lb["routing_key"] == "attributes"
    assert lb["routing_key"] in LOADBALANCING_ROUTING_KEYS
    assert lb["routing_attributes"] == [semconv.PIPELINE, semconv.MODEL]
    assert "endpoint" not in lb["protocol"]["otlp"], "the resolver supplies endpoints"
    assert len(lb["resolver"]) == 1, "exactly one resolver"
    hostnames = lb["resolver"]["static"]["hostnames"]
    assert len(hostnames) == len(set(hostnames)) >= 2
    assert all(re.fullmatch(r"[a-z0-9.-]+:4317", h) for h in hostnames)

    (pipeline,) = [
        p for p in cfg["service"]["pipelines"].values() if "loadbalancing" in p["exporters"]
    ]
    order = pipeline["processors"]
    group = next(p for p in order if component_type(p) == "groupbyattrs")
    restore = next(p for p in order if component_type(p) == "transform")
    drop = next(p for p in order if component_type(p) == "filter")
    batch = next(p for p in order if component_type(p) == "batch")
    # Group last-but-one (after batching merges requests), restore right after, filter early.
    assert order.index(drop) < order.index(batch) < order.index(group) < order.index(restore)
    assert order[-1] == restore

    # The exporter keys on resource attributes first: the grouping must cover exactly its keys.
    assert cfg["processors"][group]["keys"] == lb["routing_attributes"]
    # Every moved attribute is copied back onto the span, where the processor reads it.
    statements = " ".join(
        s for block in cfg["processors"][restore]["trace_statements"] for s in block["statements"]
    )
    assert all(
        block["context"] == "span" for block in cfg["processors"][restore]["trace_statements"]
    )
    for attr in lb["routing_attributes"]:
        assert f'set(attributes["{attr}"], resource.attributes["{attr}"])' in statements
    # Spans without a pipeline are not mlobs data and never reach a shard.
    assert cfg["processors"][drop]["traces"]["span"] == [f'attributes["{semconv.PIPELINE}"] == nil']


def _strip_pattern(cfg: dict[str, Any]) -> re.Pattern[str]:
    (block,) = cfg["processors"]["transform/trace_store"]["trace_statements"]
    assert block["context"] == "spanevent"
    (statement,) = block["statements"]
    match = re.fullmatch(r'delete_matching_keys\(attributes, "(.+)"\)', statement)
    assert match, statement
    assert "\\" not in match.group(1), "no escapes: their meaning depends on the quoting layer"
    return re.compile(match.group(1))


HEAVY = [
    semconv.PRED_IDS, semconv.PRED_TIMESTAMPS, semconv.PRED_SCORES, semconv.PRED_LABELS,
    semconv.PRED_FEATURES, semconv.PRED_TRUE_LABELS, semconv.FB_IDS, semconv.FB_LABELS,
    semconv.FB_TIMESTAMPS, semconv.SAMPLE_VALUES, semconv.SUMMARY_SKETCHES,
    semconv.SUMMARY_QUANTILES,
]  # fmt: skip
KEPT = [
    semconv.DATA_ROLE, semconv.DATA_NAME, semconv.DATA_ROWS, semconv.SUMMARY_COLUMNS,
    semconv.SUMMARY_KINDS, semconv.SUMMARY_COUNT, semconv.SUMMARY_NULLS, semconv.SUMMARY_MEAN,
    semconv.SUMMARY_MIN, semconv.SUMMARY_MAX, semconv.SUMMARY_QUANTILE_LEVELS,
    semconv.PRED_SET, semconv.PRED_CLASSES, semconv.PRED_FEATURE_NAMES, semconv.SAMPLE_COLUMNS,
    semconv.CHECK_NAME, semconv.CHECK_PASSED, "mlobs.predictions.ids.extra",
]  # fmt: skip


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_trace_store_copy_drops_row_level_arrays_only(path: Path) -> None:
    cfg = load(path)
    pattern = _strip_pattern(cfg)
    # RE2 (the collector) and Python agree on this subset: anchors, groups, [.] and alternation.
    assert re.fullmatch(r"[\^$()|\[\]a-z_.]+", pattern.pattern)
    assert [name for name in HEAVY if not pattern.search(name)] == []
    assert [name for name in KEPT if pattern.search(name)] == []
    store = [p for p in cfg["service"]["pipelines"].values() if "otlp/jaeger" in p["exporters"]]
    assert len(store) == 1 and "transform/trace_store" in store[0]["processors"]
