"""With persistence on, identifier digests survive a restart: the key lives in the state dir."""

from __future__ import annotations

import stat
from pathlib import Path

from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.service import Processor


def _digest(state_dir: Path | None, value: str = "trip-42") -> str:
    proc = Processor(
        ProcessorConfig(
            grpc_port=0, http_port=0, metrics_port=0, state_dir=state_dir and str(state_dir)
        )
    )
    assert proc.id_hasher is not None
    return proc.id_hasher.digest(value)


def test_digests_match_across_processors_sharing_a_state_dir(tmp_path: Path) -> None:
    first = _digest(tmp_path)
    assert _digest(tmp_path) == first
    key = tmp_path / "id_hash.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_without_persistence_each_process_draws_its_own_key() -> None:
    assert _digest(None) != _digest(None)
