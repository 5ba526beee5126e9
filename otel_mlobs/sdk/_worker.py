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
from collections.abc import Callable

_LOG = logging.getLogger(__name__)
MAX_PENDING = 64
"""Jobs waiting at most; :func:`submit` blocks past it."""

Job = Callable[[], None]


class Worker:
    """A FIFO of jobs run by one daemon thread, started on the first :meth:`submit`."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max(1, max_pending)
        self._cond = threading.Condition(threading.Lock())
        self._jobs: deque[Job] = deque()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._cpu = 0.0
        self._done = 0

    def submit(self, job: Job, on_error: Callable[[BaseException], None] | None = None) -> None:
        """Queue ``job``; blocks while :attr:`max_pending` jobs are already waiting."""
        item = job if on_error is None else _guarded(job, on_error)
        with self._cond:
            while len(self._jobs) >= self.max_pending:
                self._cond.wait()
            self._jobs.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="otel-mlobs-worker",
                                                daemon=True)
                self._thread.start()
                _register_exit_drain()
            self._cond.notify_all()

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every submitted job has run; False if ``timeout_s`` ran out first."""
        if threading.current_thread() is self._thread:
            return True  # a job that flushes must not wait for itself
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._jobs or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
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
                job = self._jobs.popleft()
                self._busy = True
                self._cond.notify_all()  # room for a blocked submit
            start = time.thread_time()
            try:
                job()
            except BaseException:  # a job must never kill the worker
                _LOG.exception("background SDK job failed")
            spent = time.thread_time() - start
            with self._cond:
                self._busy = False
                self._cpu += spent
                self._done += 1
                self._cond.notify_all()


def _guarded(job: Job, on_error: Callable[[BaseException], None]) -> Job:
    def run() -> None:
        try:
            job()
        except Exception as exc:
            on_error(exc)

    return run


_worker = Worker()


def worker() -> Worker:
    """The process's worker."""
    return _worker


def submit(job: Job, on_error: Callable[[BaseException], None] | None = None) -> None:
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
    _worker = Worker(_worker.max_pending)  # the parent's jobs and thread stay the parent's


_exit_hooked = False


def _register_exit_drain() -> None:
    """Drain at exit. Registered when the first job is queued, after the tracer provider exists,
    so it runs before OTel's own exit hook shuts that provider down (hooks run last-in first)."""
    global _exit_hooked
    if not _exit_hooked:
        _exit_hooked = True
        atexit.register(drain, 30.0)


os.register_at_fork(after_in_child=_after_fork_in_child)
