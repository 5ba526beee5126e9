"""Shared helpers for the benchmarks: the synthetic frame, timing, peer venvs and result files.

Every benchmark writes two files under ``benchmarks/results/``: ``NAME.json`` (machine-readable
figures, machine info and the exact command) and ``NAME.md`` (a small table for people and docs).
Peers that cannot share our environment (whylogs pins numpy<2) run in their own venv under
``benchmarks/.venvs/NAME``, created on demand, and receive the data as ``.npy`` files so both
sides summarize byte-identical content.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
VENVS_DIR = BENCH_DIR / ".venvs"
PEERS_DIR = BENCH_DIR / "peers"

N_FLOAT = 15
N_CAT = 5
N_LEVELS = 6
NULL_RATE = 0.05
CAT_LEVELS: tuple[tuple[str, ...], ...] = tuple(
    tuple(f"c{j}_level_{k}" for k in range(N_LEVELS)) for j in range(N_CAT)
)
"""Level names per categorical column: short strings, as real category labels are."""


@dataclass(frozen=True)
class RawFrame:
    """The benchmark frame as plain arrays, so it can cross into a peer venv as ``.npy``."""

    floats: np.ndarray  # (rows, N_FLOAT) float64 with NaN nulls
    codes: np.ndarray  # (rows, N_CAT) int8 level codes into CAT_LEVELS

    @property
    def float_names(self) -> list[str]:
        return [f"f{i:02d}" for i in range(self.floats.shape[1])]

    @property
    def cat_names(self) -> list[str]:
        return [f"c{j}" for j in range(self.codes.shape[1])]


def make_raw(rows: int, seed: int = 20240601) -> RawFrame:
    """Deterministic mixed-distribution floats with 5% NaN and skewed 6-level categoricals.

    Distributions differ per column (normal, lognormal, uniform, exponential) so quantile sketches
    see the shapes real features have, not one easy Gaussian.
    """
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    rng = np.random.default_rng(seed)
    cols = []
    for i in range(N_FLOAT):
        kind = i % 4
        if kind == 0:
            col = rng.normal(loc=i, scale=1.0 + i / 5, size=rows)
        elif kind == 1:
            col = rng.lognormal(mean=1.0, sigma=0.8, size=rows)
        elif kind == 2:
            col = rng.uniform(-10.0, 10.0, size=rows)
        else:
            col = rng.exponential(scale=3.0, size=rows)
        col[rng.random(rows) < NULL_RATE] = np.nan
        cols.append(col)
    floats = np.ascontiguousarray(np.column_stack(cols))
    weights = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05])
    codes = np.column_stack(
        [rng.choice(N_LEVELS, size=rows, p=np.roll(weights, j)) for j in range(N_CAT)]
    ).astype(np.int8)
    return RawFrame(floats=floats, codes=codes)


def to_pandas(raw: RawFrame):  # -> pandas.DataFrame (import kept local for peer venvs)
    """Build the DataFrame a user would hold: float64 columns and string categoricals."""
    import pandas as pd

    data: dict[str, Any] = {name: raw.floats[:, i] for i, name in enumerate(raw.float_names)}
    for j, name in enumerate(raw.cat_names):
        levels = np.array(CAT_LEVELS[j], dtype=object)
        data[name] = levels[raw.codes[:, j]]
    return pd.DataFrame(data)


def save_raw(raw: RawFrame, directory: Path) -> None:
    """Write the frame as ``.npy`` files a peer venv (numpy 1.x) can load unchanged."""
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "floats.npy", raw.floats)
    np.save(directory / "codes.npy", raw.codes)
    (directory / "levels.json").write_text(json.dumps(CAT_LEVELS))


def content_digest(raw: RawFrame) -> str:
    """Short digest of the frame's bytes; peers recompute it to prove equal content."""
    import hashlib

    h = hashlib.sha256()
    h.update(raw.floats.tobytes())
    h.update(raw.codes.tobytes())
    return h.hexdigest()[:16]


# --- timing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Wall-clock and process-CPU seconds of each timed repeat (warm-ups excluded).

    On a shared machine other work stretches wall time but not the CPU time a single-threaded
    call consumes, so both are kept: wall is what a user waits, CPU is the steadier comparison.
    """

    seconds: tuple[float, ...]
    cpu_seconds: tuple[float, ...] = ()

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best_cpu(self) -> float:
        return min(self.cpu_seconds) if self.cpu_seconds else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "best_s": self.best,
            "median_s": self.median,
            "best_cpu_s": self.best_cpu,
            "repeats_s": list(self.seconds),
            "repeats_cpu_s": list(self.cpu_seconds),
        }


def time_call(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> Timing:
    """Best-of-N timing with ``perf_counter`` (and ``process_time``); warm-ups fill caches."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return Timing(tuple(wall), tuple(cpu))


def time_interleaved(
    fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1
) -> dict[str, Timing]:
    """Like :func:`time_call` for several contenders, taking turns within each repeat.

    On a shared machine, load comes and goes over seconds; round-robin order lets every
    contender meet the same quiet and busy moments, so their ratios stay fair.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[key].append(time.perf_counter() - t0)
            cpu[key].append(time.process_time() - c0)
    return {k: Timing(tuple(wall[k]), tuple(cpu[k])) for k in fns}


# --- machine info and results -------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare figures across machines."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        # Other work on the machine moves the figures; the load says how quiet it was.
        "load_avg_1m_5m_15m": [round(x, 2) for x in os.getloadavg()],
    }
    for mod in ("pandas", "sklearn", "datasketches", "opentelemetry.sdk"):
        info[mod] = _version_of(mod)
    info["thread_pools"] = _thread_pools()
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if var in os.environ:
            info[f"env_{var}"] = os.environ[var]
    return info


def _version_of(module: str) -> str | None:
    from importlib import metadata

    dist = {"sklearn": "scikit-learn", "opentelemetry.sdk": "opentelemetry-sdk"}.get(module, module)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def code_version(paths: Sequence[str] = ("otel_mlobs",)) -> dict[str, Any]:
    """The commit measured, and which files under ``paths`` differed from it (uncommitted work).

    ``paths`` are relative to the repository root; a benchmark names the code it exercises, so
    unrelated work in progress elsewhere in the checkout does not mark its figures.
    """
    import otel_mlobs

    src = Path(otel_mlobs.__file__).resolve().parent
    root = src.parent
    out: dict[str, Any] = {"otel_mlobs_path": str(src)}
    try:
        git = ["git", "-C", str(root)]
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", *paths], capture_output=True, text=True
        )
    except OSError:
        return out
    if head.returncode == 0:
        changed = sorted(line[3:] for line in dirty.stdout.splitlines() if line.strip())
        out["commit"] = head.stdout.strip()
        out["checked_paths"] = list(paths)
        out["uncommitted_files"] = changed
        out["otel_mlobs_uncommitted_changes"] = bool(changed)
    return out


def code_line(code: dict[str, Any]) -> str:
    """One markdown line naming the code measured."""
    if "commit" not in code:
        return f"Code: otel_mlobs from {code['otel_mlobs_path']}."
    changed = code.get("uncommitted_files")
    if changed is None:  # results written before files were listed
        changed = ["otel_mlobs/"] if code["otel_mlobs_uncommitted_changes"] else []
    extra = ""
    if changed:
        shown = ", ".join(changed[:3]) + (
            f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        )
        extra = f" plus uncommitted changes in {shown}"
    return f"Code: commit {code['commit'][:10]}{extra}."


def _thread_pools() -> list[dict[str, Any]]:
    """Native thread pools (BLAS, OpenMP): a multithreaded BLAS call can change figures a lot."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "num_threads", "version", "architecture")
    return [{k: pool.get(k) for k in keys} for pool in threadpool_info()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_line() -> str:
    """The exact command that produced a result, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_s = str(script.relative_to(BENCH_DIR.parent))
    except ValueError:
        script_s = str(script)
    return shlex.join(["python", script_s, *sys.argv[1:]])


def write_results(
    name: str, payload: dict[str, Any], markdown: str, out_dir: Path | None = None
) -> tuple[Path, Path]:
    """Write ``NAME.json`` and ``NAME.md``; returns both paths."""
    out = out_dir or RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / f"{name}.json", out / f"{name}.md"
    jpath.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")
    mpath.write_text(markdown.rstrip() + "\n")
    return jpath, mpath


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; floats keep 3 significant figures."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# --- peer venvs ---------------------------------------------------------------------------------


class PeerError(RuntimeError):
    """A peer venv could not be built or its script failed; carries the peer's output."""


def ensure_venv(name: str, requirements: Sequence[str], *, quiet: bool = True) -> Path:
    """Create ``benchmarks/.venvs/NAME`` with exactly these requirements; reuse it if unchanged.

    A stamp file records the requirement list, so changing a pin rebuilds the venv instead of
    silently benchmarking a stale peer. Returns the venv's python.
    """
    root = VENVS_DIR / name
    python = root / "bin" / "python"
    stamp = root / ".mlobs-requirements"
    wanted = "\n".join(requirements)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"[bench] building peer venv {root} ({', '.join(requirements)})", file=sys.stderr)
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("--quiet")
    for cmd in (pip + ["--upgrade", "pip"], pip + list(requirements)):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PeerError(f"{shlex.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    stamp.write_text(wanted)
    return python


def run_peer(python: Path, script: str, args: Sequence[str], *, timeout: float) -> dict[str, Any]:
    """Run ``benchmarks/peers/SCRIPT`` in a peer venv; it prints one JSON object on stdout last."""
    cmd = [str(python), str(PEERS_DIR / script), *args]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the peer must not import our venv's packages
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise PeerError(f"{shlex.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise PeerError(f"{shlex.join(cmd)} printed nothing")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise PeerError(f"peer output is not JSON: {lines[-1][:200]!r}") from exc


# --- a real processor in its own process ----------------------------------------------------------

_PROCESSOR_CHILD = """
import json, sys
from otel_mlobs.processor.config import ProcessorConfig
from otel_mlobs.processor.service import Processor

with Processor(ProcessorConfig(grpc_port=0, http_port=0, metrics_port=0)) as proc:
    print(json.dumps(proc.status()["ports"]), flush=True)
    for line in sys.stdin:
        if line.strip() == "status":
            proc.wait_idle(timeout=120)
            print(json.dumps(proc.status(), default=str), flush=True)
"""


class ProcessorProcess:
    """The otel-mlobs processor on free ports, in a child process.

    A separate process keeps its receiving and analyzing work off the measured process's cores
    and GIL, as in production, while the SDK still exports over real OTLP.
    """

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.ports: dict[str, int] = {}
        self._proc: subprocess.Popen[str] | None = None

    def spawn(self) -> ProcessorProcess:
        """Start the child without waiting, so its imports overlap the caller's set-up work."""
        if self._proc is None:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _PROCESSOR_CHILD],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        return self

    def __enter__(self) -> ProcessorProcess:
        self.spawn()
        assert self._proc is not None
        line = self._proc.stdout.readline() if self._proc.stdout else ""
        if not line:
            self.__exit__(None, None, None)
            raise PeerError("processor child exited before reporting its ports")
        self.ports = json.loads(line)
        return self

    def status(self) -> dict[str, Any]:
        """The processor's status once everything it accepted so far is applied."""
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        self._proc.stdin.write("status\n")
        self._proc.stdin.flush()
        return json.loads(self._proc.stdout.readline())

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
