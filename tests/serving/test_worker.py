"""The engine worker wakes the event loop as little as possible: a request that is not streamed
gets all its outputs in one delivery when it ends; a streamed one gets them step by step."""

from __future__ import annotations

import asyncio

from nextok.generation import SamplingParams
from nextok.serving import Engine, Request
from nextok.serving.worker import EngineWorker

GREEDY = SamplingParams(temperature=0)


async def _first_delivery(worker: EngineWorker, stream: bool) -> tuple[int, bool]:
    """How many outputs are in hand when the handler first wakes, and whether the last ended."""
    queue: asyncio.Queue = asyncio.Queue()
    worker.submit(Request([1, 2, 3], 12, GREEDY), queue, stream=stream)
    first = await queue.get()
    items = [first]
    if not stream:
        while not queue.empty():
            items.append(queue.get_nowait())
    else:
        while not items[-1].finished:
            items.append(await queue.get())
    return len(items), items[-1].finished


def test_a_request_not_streamed_is_delivered_once_at_its_end(make_model):
    worker = EngineWorker(Engine(make_model()))
    worker.start()
    try:
        n, ended = asyncio.run(_first_delivery(worker, stream=False))
        assert ended and n == 12  # every token in the one wake-up
        n, ended = asyncio.run(_first_delivery(worker, stream=True))
        assert ended and n == 12
    finally:
        worker.stop()
