"""``nextok-serve`` as a process: the real command on a checkpoint file, answered over HTTP;
SIGTERM lets the request in flight finish, then the process exits 0; bad input is one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from omegaconf import OmegaConf

from helpers.checkpoints import write_checkpoint
from helpers.cli import console_cmd
from nextok.cli._conf import conf_dir
from nextok.cli.errors import CliError
from nextok.cli.serve import build


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    write_checkpoint(path, block_size=1024)
    return path


def start(ckpt: Path, port: int, *args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [*console_cmd("nextok-serve"), f"ckpt={ckpt}", f"port={port}", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stderr.readline()
    assert line.startswith("nextok-serve: last.ckpt on http://127.0.0.1:"), line
    return proc


def wait_until_up(url: str, seconds: float = 30.0) -> list[dict]:
    """The start-up line is printed just before uvicorn binds: poll until it answers."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            return httpx.get(url + "/v1/models").json()["data"]
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_serves_then_drains_on_sigterm(ckpt):
    port = free_port()
    proc = start(ckpt, port)
    try:
        url = f"http://127.0.0.1:{port}"
        models = wait_until_up(url)
        assert [m["id"] for m in models] == ["last.ckpt"]
        body = dict(model="last.ckpt", prompt="def ", max_tokens=300, temperature=0, stream=True)
        lines: list[str] = []
        first = threading.Event()

        def read():
            with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
                for ln in r.iter_lines():
                    if ln:
                        lines.append(ln)
                        first.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert first.wait(30)
        proc.send_signal(signal.SIGTERM)
        reader.join(60)
        assert proc.wait(60) == 0
        assert lines[-1] == "data: [DONE]"  # the stream in flight was finished, not cut
        last = json.loads(lines[-2].removeprefix("data: "))["choices"][0]
        assert last["finish_reason"] in ("length", "stop")
        assert "nextok-serve: stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bad_input_is_one_line(ckpt, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(
        [*console_cmd("nextok-serve"), f"ckpt={tmp_path / 'missing.ckpt'}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"nextok-serve: error: checkpoint not found: {tmp_path / 'missing.ckpt'}"
    ]
    cfg = OmegaConf.load(Path(conf_dir()) / "serve.yaml")
    cfg.ckpt, cfg.kv_blocks = str(ckpt), 0
    with pytest.raises(CliError, match="^num_blocks must be a positive integer, got 0$"):
        build(cfg)
