"""The decoding thread: one thread owns the models and steps their schedulers; the HTTP
handlers (asyncio) submit jobs to it and receive each job's tokens through a queue.

    worker = Worker(models, metrics); worker.start()
    sink = worker.submit(served, [(prompt, settings), ...])    # from the event loop
    async for job, sample, event in sink: ...                  # tokens as they come
    worker.stop()

The thread holds the fast decoding scope of every model (`generate.fast.fast_decode`) for
its lifetime. A step that raises (a bug, memory) fails the
jobs of that model only: they get the error, the scheduler starts afresh, and the server
and the other models go on.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field

from ..generate import PromptCache
from ..generate.fast import fast_decode
from ..generate.scheduler import Job, Scheduler
from ..model import GPT
from .metrics import Metrics


@dataclass(eq=False)
class ServedModel:
    """One model the server answers for: its name (the request's `model`), the GPT and its scheduler."""

    name: str
    model: GPT
    scheduler: Scheduler
    prompt_cache: PromptCache | None = None
    draft: GPT | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def context_length(self) -> int:
        return self.model.config.context_length


class Sink:
    """The tokens of one HTTP request's jobs, delivered on the event loop:
    (job, sample, event) per token, then (job, None, None) when a job is done."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.queue = loop, asyncio.Queue()
        self.jobs: list[Job] = []
        self.error: str | None = None

    def put(self, item) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    async def get(self, timeout: float | None = None):
        return await asyncio.wait_for(self.queue.get(), timeout)


class Worker:
    def __init__(self, models: dict[str, ServedModel], metrics: Metrics):
        self.models, self.metrics = models, metrics
        self._sinks: dict[Job, tuple[Sink, ServedModel]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._calls: list = []
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- from the event loop -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="glassgpt-decode", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def submit(self, served: ServedModel, jobs: list[tuple], loop: asyncio.AbstractEventLoop) -> Sink:
        """jobs: (built Request, submit options dict) per prompt; all are queued together, or
        none (a GlassError from one withdraws the others)."""
        sink = Sink(loop)
        with self._lock:
            try:
                for request, options in jobs:
                    job = served.scheduler.submit_request(request, **options)
                    sink.jobs.append(job)
                    self._sinks[job] = (sink, served)
            except Exception:
                for job in sink.jobs:
                    served.scheduler.cancel(job)
                    self._sinks.pop(job, None)
                raise
        self._wake.set()
        return sink

    def cancel(self, sink: Sink) -> None:
        for job in sink.jobs:
            for served in self.models.values():
                served.scheduler.cancel(job)
        self._wake.set()

    async def call(self, fn, *args):
        """Run fn(*args) on the decoding thread, between steps (for work that must not run
        beside decoding on the same model); returns its result."""
        future = asyncio.get_running_loop().create_future()
        loop = future.get_loop()

        def task():
            try:
                result = fn(*args)
            except BaseException as e:       # handed to the caller
                loop.call_soon_threadsafe(lambda error=e: future.done() or future.set_exception(error))
            else:
                loop.call_soon_threadsafe(lambda: future.done() or future.set_result(result))

        with self._lock:
            self._calls.append(task)
        self._wake.set()
        return await future

    # -- on the decoding thread ----------------------------------------------------------------
    def _run(self) -> None:
        with contextlib.ExitStack() as scopes:
            for scope in decoding_scopes(self.models.values()):
                scopes.enter_context(scope)
            while not self._stopping:
                with self._lock:
                    calls, self._calls = self._calls, []
                for task in calls:
                    task()
                busy = False
                for served in self.models.values():
                    if served.scheduler.busy:
                        busy = True
                        self._step(served)
                if not busy and not self._calls:
                    self._wake.wait(timeout=1.0)
                    self._wake.clear()

    def _step(self, served: ServedModel) -> None:
        scheduler, m = served.scheduler, self.metrics
        drafted, accepted = scheduler.drafted, scheduler.accepted
        try:
            events = scheduler.step()
        except Exception as e:           # noqa: BLE001 - one model's failure must not stop the server
            self._fail(served, f"decoding failed: {type(e).__name__}: {e}")
            return
        with self._lock:
            for job, sample, event in events:
                entry = self._sinks.get(job)
                if entry is not None:
                    entry[0].put((job, sample, event))
            for job in [j for j, (_, s) in self._sinks.items() if s is served and j.done]:
                self._sinks.pop(job)[0].put((job, None, None))
        name = served.name
        m.queue_length.labels(name).set(scheduler.queue_length)
        m.batch_size.labels(name).set(scheduler.batch_size)
        if scheduler.drafted != drafted:
            m.drafted.labels(name).inc(scheduler.drafted - drafted)
            m.accepted.labels(name).inc(scheduler.accepted - accepted)
            m.acceptance.labels(name).set(scheduler.accepted / max(1, scheduler.drafted))

    def _fail(self, served: ServedModel, message: str) -> None:
        with self._lock:
            old = served.scheduler
            served.scheduler = Scheduler(served.model, max_batch=old.max_batch, prompt_cache=served.prompt_cache,
                                         draft=old.draft, draft_tokens=old.draft_tokens)
            if served.prompt_cache is not None:
                served.prompt_cache.clear()
            for job in [j for j, (_, s) in self._sinks.items() if s is served]:
                sink = self._sinks.pop(job)[0]
                sink.error = message
                sink.put((job, None, None))


def decoding_scopes(models) -> list:
    """The fast decoding scope of every served model and draft, held for the server's lifetime."""
    unique = {id(m): m for served in models for m in (served.model, served.draft) if m is not None}
    return [fast_decode(m) for m in unique.values()]
