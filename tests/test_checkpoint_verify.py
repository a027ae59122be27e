"""Per-tensor checksums recorded at save time are verified on
load, with a one-line refusal naming the tensor; old checkpoints load after a note; NaN weights
are refused; ``verify=False`` skips both."""

from __future__ import annotations

import pytest
import torch

from nextok.checkpoint import atomic_torch_save, checkpoint_meta, load_checkpoint
from nextok.checkpoint.verify import CHECKSUMS, add_checksums, tensor_checksum, verify_checksums
from nextok.model import ModelConfig, Transformer


def _checkpoint(path):
    """A nextok checkpoint as nextok-train's CheckpointIO writes it (checksums included)."""
    from tokenizers import Tokenizer, models

    cfg = ModelConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, d_model=32)
    torch.manual_seed(0)
    model = Transformer(cfg)
    vocab = {f"t{i}": i for i in range(63)} | {"<|endoftext|>": 63}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "optimizer_states": [{"state": {0: {"exp_avg": torch.randn(8)}}, "param_groups": []}],
        "nextok": {"model_config": cfg.to_dict(), "tokenizer_json": tok.to_str()},
    }
    atomic_torch_save(ckpt, path)
    return model


def _flip(path, tensor: torch.Tensor, offset: int = 7) -> None:
    """Flip one byte inside ``tensor``'s data as stored in the file."""
    data = bytearray(path.read_bytes())
    needle = tensor.contiguous().view(torch.uint8).numpy().tobytes()[:64]
    at = data.find(needle)
    assert at > 0 and data.find(needle, at + 1) < 0
    data[at + offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_checksums_are_recorded_for_every_tensor_and_are_layout_independent(tmp_path):
    _checkpoint(tmp_path / "a.ckpt")
    ck = torch.load(tmp_path / "a.ckpt", weights_only=True)
    sums = ck["nextok"][CHECKSUMS]
    assert (
        "state_dict/model.tok_emb.weight" in sums and "optimizer_states/0/state/0/exp_avg" in sums
    )
    assert verify_checksums(ck, "a.ckpt")
    t = torch.arange(12.0).reshape(3, 4)
    assert tensor_checksum(t.t().contiguous().t()) == tensor_checksum(t)  # strides do not matter
    assert tensor_checksum(t.to(torch.bfloat16)) != tensor_checksum(t)
    assert add_checksums({"w": t}) == {"w": t}  # no nextok entry: nothing recorded


def test_a_flipped_byte_is_refused_naming_the_tensor(tmp_path):
    path = tmp_path / "a.ckpt"
    model = _checkpoint(path)
    _flip(path, model.state_dict()["blocks.0.mlp.fc.weight"])
    line = "tensor state_dict/model.blocks.0.mlp.fc.weight does not match its checksum"
    with pytest.raises(ValueError, match=line):
        load_checkpoint(path)
    with pytest.raises(ValueError, match=line):
        checkpoint_meta(path, verify=True)  # resume
    loaded = load_checkpoint(path, verify=False)  # the user's choice
    assert not torch.equal(loaded.model.blocks[0].mlp.fc.weight, model.blocks[0].mlp.fc.weight)


def test_a_flipped_byte_in_the_optimizer_state_is_refused_on_resume(tmp_path):
    path = tmp_path / "a.ckpt"
    _checkpoint(path)
    exp_avg = torch.load(path, weights_only=True)["optimizer_states"][0]["state"][0]["exp_avg"]
    _flip(path, exp_avg, offset=3)
    with pytest.raises(
        ValueError, match="tensor optimizer_states/0/state/0/exp_avg does not match"
    ):
        checkpoint_meta(path, verify=True)


def test_old_checkpoints_load_with_a_note_and_nan_weights_are_refused(tmp_path, capsys):
    path = tmp_path / "old.ckpt"
    _checkpoint(path)
    ck = torch.load(path, weights_only=True)
    del ck["nextok"][CHECKSUMS]
    torch.save(ck, path)  # as nextok wrote checkpoints before checksums
    load_checkpoint(path)
    assert "records no checksums (written before nextok did)" in capsys.readouterr().err
    ck["state_dict"]["model.blocks.0.mlp.fc.weight"][1, :3] = float("nan")
    torch.save(ck, path)
    with pytest.raises(
        ValueError, match="3 of .* weights in blocks.0.mlp.fc.weight are not finite"
    ):
        load_checkpoint(path)


def test_checksums_of_another_kind_are_named_not_reported_as_damage(tmp_path):
    path = tmp_path / "a.ckpt"
    _checkpoint(path)
    ck = torch.load(path, weights_only=True)
    ck["nextok"][CHECKSUMS] = {k: "crc32:00000000" for k in ck["nextok"][CHECKSUMS]}
    with pytest.raises(
        ValueError, match="records checksums of a kind this nextok does not compute"
    ):
        verify_checksums(ck, path)
