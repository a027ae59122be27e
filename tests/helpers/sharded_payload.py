"""Crafted sharded (torch.distributed.checkpoint) folders whose pickles would run code: each
payload creates a folder (the marker) when it is unpickled without restrictions."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch


class Payload:
    """Unpickled by a plain ``pickle.load`` / ``torch.load(weights_only=False)``: ``mkdir``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def save_dcp(state: dict, folder: Path) -> Path:
    """A genuine DCP folder of ``state`` (one process, no process group)."""
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.distributed is disabled ... single process"
        dcp.save(state, checkpoint_id=str(folder), no_dist=True)
    return folder


def sharded_folder(folder: Path, marker: Path, where: str = "metadata") -> Path:
    """A sharded checkpoint folder with a ``meta.pt`` nextok reads; the payload sits in
    ``.metadata`` (``where="metadata"``) or in a non-tensor value of the shard (``"value"``)."""
    state = {"state_dict": {"model.w": torch.ones(2, 2)}}
    if where == "value":
        state["state_dict"]["model.evil"] = Payload(marker)
    save_dcp(state, folder)
    if where == "metadata":
        (folder / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    torch.save(
        {"nextok": {"model_config": {}, "tokenizer_json": ""}, "global_step": 1}, folder / "meta.pt"
    )
    assert not marker.exists()
    return folder
