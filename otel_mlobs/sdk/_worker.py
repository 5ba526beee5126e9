"""One background thread that finishes the SDK's work after the caller's call has returned.

Summaries, samples and prediction batches are what the SDK spends its time on, and none of it
has to happen while the model waits: the caller snapshots its data
(:mod:`otel_mlobs.sdk._snapshot`), computes what it must return (a content pointer) and hands the
rest to this worker, the way OTel's ``BatchSpanProcessor`` hands span export to its own thread.

Guarantees:

* Jobs run one at a time in the order they were submitted, so the events of a span keep their
  order and a span is ended only after every job that writes to it.
* Nothing is lost at a flush or at exit: :func:`drain` waits until every submitted job has run.
  ``otel_mlobs.flush()`` and ``shutdown()`` call it before flushing the exporter, a provider
  built by ``configure()`` calls it first when it is flushed or shut down itself, and an
  ``atexit`` hook calls it before OTel's own exit hook shuts the provider down.
* A job that raises is logged and counted as an SDK error; it never reaches the user's code and
  never stops the worker.
* At most :data:`MAX_PENDING` jobs wait at once; past that :func:`submit` blocks until the worker
  catches up, so a producer faster than the worker slows down instead of piling up snapshots.
* After ``fork()`` the child starts with an empty queue and starts its own thread on first use.

Sharing the interpreter
-----------------------
The worker's Python code holds the GIL, and a caller thread coming back from GIL-free work (a
model's C loop) has to wait for it: up to the interpreter's switch interval (5 ms) each time, more
when the worker is descheduled while holding it on a busy machine. So the worker paces itself:
a job may be a generator that yields between steps (a summary, then each event), and after each
step the worker sleeps :data:`PAUSE_RATIO` times as long as the step took (at most
:data:`MAX_PAUSE_S`), keeping its share of the interpreter small and its stretches short. It
stops pausing while someone waits in :func:`drain` or when :data:`MAX_PENDING` / 2 jobs are
queued, so pacing never loses work or makes a flush slow.

The worker's own thread CPU time is kept (:func:`cpu_seconds`) so benchmarks can report the
background cost per call next to the caller's.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

_LOG = logging.getLogger(__name__)
MAX_PENDING = 64
"""Jobs waiting at most; :func:`submit` blocks past it."""
PAUSE_RATIO = 6.0
"""After each step the worker sleeps this many times the step's duration (see the module docs)."""
MAX_PAUSE_S = 0.005

Job = Callable[[], Iterator[object] | None]
OnError = Callable[[BaseException], None]


class Worker:
    """A FIFO of jobs run by one daemon thread, started on the first :meth:`submit`."""

    def __init__(self, max_pending: int = MAX_PENDING, pause_ratio: float = PAUSE_RATIO) -> None:
        self.max_pending = max(1, max_pending)
        self.pause_ratio = pause_ratio
        self._cond = threading.Condition(threading.Lock())
        self._jobs: deque[tuple[Job, OnError | None]] = deque()
        self._busy = False
        self._draining = 0
        self._thread: threading.Thread | None = None
        self._cpu = 0.0
        self._done = 0

    def submit(self, job: Job, on_error: OnError | None = None) -> None:
        """Queue ``job`` (a callable; if it returns an iterator, each item ends a step); blocks
        while :attr:`max_pending` jobs are already waiting. ``on_error`` receives what the job
        raises; without it the error is logged. Called from a job (a span processor of the
        user's reacting to a span the worker ends, say), the job runs at once instead: waiting
        for room in its own queue would never end."""
        if threading.current_thread() is self._thread:
            try:
                self._run(job)
            except Exception as exc:
                self._report(exc, on_error)
            return
        with self._cond:
            while len(self._jobs) >= self.max_pending:
                self._cond.wait()
            self._jobs.append((job, on_error))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="otel-mlobs-worker", daemon=True
                )
                self._thread.start()
                _register_exit_drain()
            self._cond.notify_all()

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every submitted job has run; False if ``timeout_s`` ran out first."""
        if threading.current_thread() is self._thread:
            return True  # a job that flushes must not wait for itself
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            self._draining += 1  # the worker stops pausing while anyone waits
            try:
                while self._jobs or self._busy:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
            finally:
                self._draining -= 1
        return True

    def pending(self) -> int:
        """Jobs submitted and not yet finished."""
        with self._cond:
            return len(self._jobs) + int(self._busy)

    def cpu_seconds(self) -> float:
        """Thread CPU time the worker has spent on finished jobs."""
        with self._cond:
            return self._cpu

    def jobs_done(self) -> int:
        with self._cond:
            return self._done

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    self._cond.wait()
                job, on_error = self._jobs.popleft()
                self._busy = True
                self._cond.notify_all()  # room for a blocked submit
            start = time.thread_time()
            try:
                self._run(job)
            except Exception as exc:  # a job must never kill the worker
                self._report(exc, on_error)
            spent = time.thread_time() - start
            with self._cond:
                self._busy = False
                self._cpu += spent
                self._done += 1
                self._cond.notify_all()

    @staticmethod
    def _report(exc: Exception, on_error: OnError | None) -> None:
        if on_error is not None:
            try:
                on_error(exc)
                return
            except Exception:
                pass
        _LOG.error("background SDK job failed", exc_info=exc)

    def _run(self, job: Job) -> None:
        begun = time.perf_counter()
        steps = job()
        if steps is not None:
            for _ in steps:
                begun = self._pause(begun)
        self._pause(begun)

    def _pause(self, begun: float) -> float:
        """Sleep in proportion to the step that began at ``begun``; returns when the next began."""
        now = time.perf_counter()
        if self.pause_ratio > 0 and not self._draining and len(self._jobs) < self.max_pending // 2:
            time.sleep(min((now - begun) * self.pause_ratio, MAX_PAUSE_S))
            now = time.perf_counter()
        return now


_worker = Worker()


def worker() -> Worker:
    """The process's worker."""
    return _worker


def submit(job: Job, on_error: OnError | None = None) -> None:
    """Queue ``job`` on the process's worker (see :meth:`Worker.submit`)."""
    _worker.submit(job, on_error)


def drain(timeout_s: float | None = None) -> bool:
    """Wait for the process's worker to run everything submitted so far."""
    return _worker.drain(timeout_s)


def cpu_seconds() -> float:
    """Thread CPU time the process's worker has spent so far."""
    return _worker.cpu_seconds()


def _after_fork_in_child() -> None:
    global _worker
    # the parent's jobs and thread stay the parent's
    _worker = Worker(_worker.max_pending, _worker.pause_ratio)


_exit_hooked = False


def _register_exit_drain() -> None:
    """Drain at exit. Registered when the first job is queued, after the tracer provider exists,
    so it runs before OTel's own exit hook shuts that provider down (hooks run last-in first)."""
    global _exit_hooked
    if not _exit_hooked:
        _exit_hooked = True
        atexit.register(drain, 30.0)


os.register_at_fork(after_in_child=_after_fork_in_child)
