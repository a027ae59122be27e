"""A cache build killed mid-way (``kill -9``) leaves its temp dir; the next start removes it, and
never the temp dir of a build that is still running."""

from __future__ import annotations

import subprocess
import sys
import time

from nextok.data import LMDataModule

# builds key "k" from a generator that writes one chunk, then waits forever
HANGING_BUILD = """
import sys, time
import numpy as np
from nextok.data.cache import build_cache

def chunks():
    yield np.arange(10)
    time.sleep(600)

build_cache(sys.argv[1], "k", {"train": chunks()}, np.uint16)
"""


def _start_build(root):
    proc = subprocess.Popen([sys.executable, "-c", HANGING_BUILD, str(root)])
    deadline = time.monotonic() + 60
    while not list(root.glob(f".k.tmp-*-{proc.pid}-*/train_00000.bin")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def _start(tmp_path, corpus, cache_dir):
    dm = LMDataModule(
        source="json",
        data_files=str(corpus),
        vocab_size=300,
        block_size=16,
        batch_size=4,
        run_dir=str(tmp_path / "run"),
        cache_dir=str(cache_dir),
    )
    dm.prepare_data()
    return dm


def test_killed_build_temp_dir_removed_running_one_kept(tmp_path, jsonl_corpus):
    cache_dir = tmp_path / "cache"
    _start(tmp_path, jsonl_corpus, cache_dir)  # this corpus's cache exists from now on
    killed = _start_build(cache_dir)
    (dead_tmp,) = cache_dir.glob(".k.tmp-*")
    killed.kill()
    killed.wait()
    running = _start_build(cache_dir)
    try:
        (live_tmp,) = set(cache_dir.glob(".k.tmp-*")) - {dead_tmp}
        assert f"-{running.pid}-" in live_tmp.name
        # the next start cleans up, also one whose cache exists already
        _start(tmp_path, jsonl_corpus, cache_dir)
        assert not dead_tmp.exists()
        assert live_tmp.exists()  # its owner is still writing it
    finally:
        running.kill()
        running.wait()
