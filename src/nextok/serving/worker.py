"""The engine on a background thread, feeding each request's outputs to an asyncio queue.

The HTTP handlers (:mod:`nextok.serving.api`) submit requests and await their outputs; one
thread owns the model and runs :meth:`Engine.step` while there is work, so many clients share
each forward.

The event loop is woken as little as possible: at most once per step, and a request that is not
streamed gets its outputs in one delivery when it ends. Each wake-up makes the event loop take
the GIL for the handlers' Python work while the engine thread waits for it (up to the
interpreter's switch interval) before its next step could start.
"""

from __future__ import annotations

import asyncio
import threading

from nextok.serving.engine import Engine, Output, Request


class EngineWorker:
    """Runs ``engine`` on a daemon thread; :meth:`submit` returns a sequence id whose outputs
    arrive on the given queue (an :class:`Output` per step; a ``BaseException`` if the step
    itself failed, after which the engine is reset so that the server keeps serving)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # seq id -> (loop, queue, outputs held back until the end; None: streamed)
        self._subs: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue, list | None]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="nextok-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the work in hand, then end the thread."""
        self._stop = True
        self._wake.set()
        self._thread.join()

    def submit(self, request: Request, queue: asyncio.Queue, stream: bool = True) -> int:
        """Queue ``request`` (``ValueError`` if the engine refuses it). ``stream``: each step's
        output as it comes; else all of them at once when the sequence ends."""
        loop = asyncio.get_running_loop()
        with self._lock:
            seq_id = self.engine.add(request)
            self._subs[seq_id] = (loop, queue, None if stream else [])
        self._wake.set()
        return seq_id

    def cancel(self, seq_id: int) -> None:
        """Drop ``seq_id`` (a client that went away): its blocks are freed at the next step."""
        with self._lock:
            if self._subs.pop(seq_id, None) is not None:
                self.engine.cancel(seq_id)
        self._wake.set()

    def _deliver(self, seq_id: int, item: Output | BaseException, last: bool) -> None:
        with self._lock:
            sub = self._subs.pop(seq_id, None) if last else self._subs.get(seq_id)
        if sub is not None:
            loop, queue, _ = sub
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def _run(self) -> None:
        engine = self.engine
        while True:
            if not engine.has_work:
                if self._stop:
                    return
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                outputs = engine.step()
            except Exception as err:  # a bug must not kill the server: fail the requests in hand
                for seq_id in list(self._subs):
                    self._deliver(seq_id, err, last=True)
                engine.reset()
                continue
            batches: dict[asyncio.AbstractEventLoop, list] = {}
            with self._lock:
                for out in outputs:
                    sub = (self._subs.pop if out.finished else self._subs.get)(out.seq_id, None)
                    if sub is None:
                        continue
                    loop, queue, held = sub
                    if held is None:
                        batches.setdefault(loop, []).append((queue, out))
                    else:
                        held.append(out)
                        if out.finished:
                            batches.setdefault(loop, []).extend((queue, o) for o in held)
            for loop, items in batches.items():  # one wake-up of each event loop per step
                loop.call_soon_threadsafe(_put_all, items)


def _put_all(items: list[tuple[asyncio.Queue, Output]]) -> None:
    for queue, out in items:
        queue.put_nowait(out)
