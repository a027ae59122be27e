"""nextok reads sharded (torch.distributed.checkpoint) folders through a reader that cannot run
code: a crafted ``.metadata`` or non-tensor value is refused in one line naming the file, and a
genuine folder (model + optimizer) still loads."""

from __future__ import annotations

import pickle

import pytest
import torch

from helpers.sharded_payload import Payload, save_dcp, sharded_folder
from nextok.checkpoint import UnsafeCheckpointError
from nextok.checkpoint.consolidate import consolidate
from nextok.checkpoint.dcp import load_dcp, load_sharded_training_state, read_dcp_metadata


def test_crafted_metadata_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    folder = sharded_folder(tmp_path / "ck", marker)
    with pytest.raises(UnsafeCheckpointError, match=r"ck/\.metadata: it asks for posix\.mkdir"):
        read_dcp_metadata(folder)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        consolidate(folder, tmp_path / "out.pt")
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_crafted_value_in_a_shard_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    folder = sharded_folder(tmp_path / "ck", marker, where="value")
    read_dcp_metadata(folder)  # the metadata itself is genuine
    with pytest.raises(UnsafeCheckpointError, match="'state_dict.model.evil' holds objects"):
        consolidate(folder, tmp_path / "out.pt")
    assert not marker.exists()


def test_shard_outside_the_folder_and_garbage_metadata_are_refused(tmp_path):
    folder = save_dcp({"w": torch.ones(3)}, tmp_path / "ck")
    meta = read_dcp_metadata(folder)
    for info in meta.storage_data.values():
        info.relative_path = "../../etc/passwd"
    (folder / ".metadata").write_bytes(pickle.dumps(meta))
    with pytest.raises(ValueError, match="names a shard '../../etc/passwd' that is not a file"):
        read_dcp_metadata(folder)
    (folder / ".metadata").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a torch.distributed.checkpoint metadata file"):
        read_dcp_metadata(folder)
    (folder / ".metadata").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="is not torch.distributed.checkpoint metadata"):
        read_dcp_metadata(folder)


def _model_and_optimizer(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return model, opt


def test_genuine_training_state_loads_and_a_crafted_optimizer_value_is_refused(tmp_path):
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    model, opt = _model_and_optimizer(0)
    state = {
        "state_dict": get_model_state_dict(model),
        "optimizer_0": get_optimizer_state_dict(model, opt),
    }
    folder = save_dcp(state, tmp_path / "ck")
    torch.save({"nextok": {"tokens_seen": 5}, "global_step": 1}, folder / "meta.pt")
    other, other_opt = _model_and_optimizer(1)
    meta = load_sharded_training_state(folder, other, [other_opt])
    assert meta["global_step"] == 1
    assert torch.equal(other.weight, model.weight)
    assert other_opt.param_groups[0]["betas"] == (0.8, 0.9)
    assert torch.equal(other_opt.state[other.weight]["exp_avg"], opt.state[model.weight]["exp_avg"])

    marker = tmp_path / "ran"
    state["optimizer_0"]["param_groups"][0]["lr"] = Payload(marker)
    bad = save_dcp(state, tmp_path / "bad")
    torch.save({"global_step": 1}, bad / "meta.pt")
    with pytest.raises(UnsafeCheckpointError, match="param_groups.0.lr' holds objects"):
        load_sharded_training_state(bad, other, [other_opt])
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        load_dcp({"optimizer_0": get_optimizer_state_dict(other, other_opt)}, bad)
    assert not marker.exists()
