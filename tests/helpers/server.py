"""A real nextok server on 127.0.0.1 (uvicorn on a thread, a free port) for the API tests."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from nextok.serving import Engine
from nextok.serving.api import Served, build_app
from nextok.serving.worker import EngineWorker
from nextok.special_tokens import EOT


class ThreadServer:
    def __init__(self, model, tokenizer, name: str = "tiny", **engine_kwargs) -> None:
        engine = Engine(
            model,
            tokenizer=tokenizer,
            eos_id=tokenizer.token_to_id(EOT),
            vocab_limit=tokenizer.get_vocab_size(),
            **engine_kwargs,
        )
        self.served = Served(
            worker=EngineWorker(engine),
            tokenizer=tokenizer,
            name=name,
            block_size=model.config.block_size,
            vocab_limit=tokenizer.get_vocab_size(),
            eos=EOT,
        )
        self.engine = engine
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(build_app(self.served), log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> ThreadServer:
        self.served.worker.start()
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.served.worker.stop()
