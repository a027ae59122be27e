"""A Mixture-of-Experts model trained by 2 FSDP2 processes (gloo, CPU, fp32) equals 1 process with
the same global batch: loss within 1e-5 after K steps, with the load-balancing loss, the z-loss
and aux-loss-free bias balancing all on (expert loads are summed over ranks, so neither the aux
loss nor the bias update depends on how the batch is split)."""

from __future__ import annotations

import pytest
import torch

from helpers.distributed import QUIET, TINY_MODEL, data_overrides, eval_loss, run_train
from nextok.checkpoint import load_checkpoint
from nextok.checkpoint.consolidate import consolidate

K, GLOBAL_BATCH, TOL = 3, 4, 1e-5
MOE = [
    "model.mlp=moe",
    "model.n_experts=4",
    "model.moe_top_k=2",
    "model.moe_ffn_hidden=32",
    "model.first_k_dense=1",
    "model.moe_aux_loss_coef=0.1",
    "model.moe_z_loss_coef=0.01",
    "model.moe_bias_update_rate=0.01",
]


def _common(corpus, run_dir, tokenizer=None) -> list[str]:
    return [
        f"hydra.run.dir={run_dir}",
        *TINY_MODEL,
        *MOE,
        *data_overrides(corpus, tokenizer),
        *QUIET,
        f"global_batch_size={GLOBAL_BATCH}",
        "seed=7",
        "schedule=constant",
        "schedule.warmup_steps=0",
        "optim.lr=0.01",
        f"trainer.max_steps={K}",
    ]


def test_moe_fsdp2_two_processes_match_single(tmp_path, corpus):
    single = tmp_path / "single"
    run_train([*_common(corpus, single), "trainer=cpu", f"data.batch_size={GLOBAL_BATCH}"])
    fsdp = tmp_path / "fsdp"
    run_train(
        [
            *_common(corpus, fsdp, single / "tokenizer.json"),
            "trainer=fsdp_cpu",
            "trainer.devices=2",
            f"data.batch_size={GLOBAL_BATCH // 2}",
        ]
    )
    ref = load_checkpoint(single / "checkpoints" / "last.ckpt")
    got = load_checkpoint(consolidate(fsdp / "checkpoints" / "last.ckpt", tmp_path / "k.pt"))
    text = corpus.read_text()[-20_000:]
    a, b = eval_loss(got, text), eval_loss(ref, text)
    print(f"MoE FSDP2 vs 1 process after {K} steps: loss {a:.7f} vs {b:.7f}")
    assert abs(a - b) < TOL
    bias = "blocks.1.mlp.expert_bias"
    ref_sd, got_sd = ref.model.state_dict(), got.model.state_dict()
    assert ref_sd[bias].abs().sum() > 0  # the bias update ran ...
    torch.testing.assert_close(got_sd[bias], ref_sd[bias], atol=0, rtol=0)  # ... identically
    # teeth: training moved the model far beyond the tolerance (a seeded re-initialisation, so
    # the figure does not depend on which tests ran before in this process)
    fresh = load_checkpoint(single / "checkpoints" / "last.ckpt")
    torch.manual_seed(7)
    fresh.model.init_weights()
    moved = abs(eval_loss(fresh, text) - b)
    print(f"training moved the loss by {moved:.5f}")
    assert moved > 100 * TOL


@pytest.mark.slow
def test_moe_ddp_two_processes_match_single_with_muon(tmp_path, corpus):
    """optim=muon under DDP (2 gloo processes) equals 1 process, on an MoE model."""
    single = tmp_path / "single"
    extra = ["optim=muon", "optim.lr=0.02"]
    run_train([*_common(corpus, single), *extra, "trainer=cpu", f"data.batch_size={GLOBAL_BATCH}"])
    ddp = tmp_path / "ddp"
    run_train(
        [
            *_common(corpus, ddp, single / "tokenizer.json"),
            *extra,
            "trainer=ddp_sim",
            "trainer.devices=2",
            f"data.batch_size={GLOBAL_BATCH // 2}",
        ]
    )
    text = corpus.read_text()[-20_000:]
    a = eval_loss(load_checkpoint(ddp / "checkpoints" / "last.ckpt"), text)
    b = eval_loss(load_checkpoint(single / "checkpoints" / "last.ckpt"), text)
    print(f"Muon DDP vs 1 process after {K} steps: loss {a:.7f} vs {b:.7f}")
    # Newton-Schulz runs in fp32 on CPU (optim.ns_dtype=auto): only summation order differs
    assert abs(a - b) < 1e-4


@pytest.mark.slow
def test_moe_fsdp2_with_muon_matches_single_and_resumes_exactly(tmp_path, corpus):
    """optim=muon under FSDP2 (2 gloo processes; expert banks sharded over experts, matrices over
    rows: each rank all-gathers the update for Newton-Schulz): K steps, then a resume of the
    sharded checkpoint (Muon momentum + Adam moments) to K2 steps, equal 1 process run K2 steps."""
    k2 = K + 2
    extra = ["optim=muon", "optim.lr=0.02"]
    single = tmp_path / "single"
    run_train(
        [
            *_common(corpus, single),
            *extra,
            "trainer=cpu",
            f"data.batch_size={GLOBAL_BATCH}",
            f"trainer.max_steps={k2}",
        ]
    )
    fsdp = tmp_path / "fsdp"
    two = [
        *_common(corpus, fsdp, single / "tokenizer.json"),
        *extra,
        "trainer=fsdp_cpu",
        "trainer.devices=2",
        f"data.batch_size={GLOBAL_BATCH // 2}",
    ]
    run_train(two)  # K steps
    out, _ = run_train([*two, f"trainer.max_steps={k2}", "resume=auto"])
    sharded = fsdp / "checkpoints" / "last.ckpt"
    assert f"resuming from {sharded}" in out
    ref = load_checkpoint(single / "checkpoints" / "last.ckpt")
    got = load_checkpoint(consolidate(sharded, tmp_path / "k.pt"))
    assert got.meta["tokens_seen"] == ref.meta["tokens_seen"]
    text = corpus.read_text()[-20_000:]
    a, b = eval_loss(got, text), eval_loss(ref, text)
    print(f"Muon FSDP2 ({K} steps + resumed to {k2}) vs 1 process: loss {a:.7f} vs {b:.7f}")
    assert abs(a - b) < 1e-4
    for name, p in ref.model.state_dict().items():
        torch.testing.assert_close(got.model.state_dict()[name], p, rtol=0, atol=1e-4, msg=name)
