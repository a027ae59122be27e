"""optim=muon: the update against torch.optim.Muon, the Newton-Schulz dtype, expert banks, sharded
(DTensor) parameters, which tensors Muon gets, per-group hyper-parameters under one schedule,
gradient accumulation and exact resume through a Lightning checkpoint."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, TensorDataset

from helpers.tiny_models import tiny_moe_config
from helpers.trainer import quiet_trainer
from nextok.lit import LMModule
from nextok.model import ModelConfig, Transformer
from nextok.optim import AdamWConfig, ScheduleConfig, make_schedule, optim_config
from nextok.optim.muon import MuonAdamW, MuonConfig, build_muon, muon_param_groups
from nextok.optim.newton_schulz import Muon, newton_schulz, ns_batches, ns_dtype_for

VOCAB, BLOCK = 64, 16


def _ids(params) -> set[int]:
    return {id(p) for p in params}


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust_lr_fn", ["original", "match_rms_adamw"])
def test_bf16_update_equals_torch_muon_bit_for_bit(nesterov, adjust_lr_fn):
    torch.manual_seed(0)
    ours = [nn.Parameter(torch.randn(shape)) for shape in [(64, 32), (32, 64), (48, 48)]]
    ref = [nn.Parameter(p.detach().clone()) for p in ours]
    start = [p.detach().clone() for p in ours]
    kw = {"lr": 0.02, "weight_decay": 0.1, "nesterov": nesterov, "adjust_lr_fn": adjust_lr_fn}
    a, b = Muon(ours, ns_dtype="bfloat16", **kw), torch.optim.Muon(ref, **kw)
    for _ in range(3):
        for p, q in zip(ours, ref, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        a.step()
        b.step()
    for p, q in zip(ours, ref, strict=True):
        assert torch.equal(p, q)
        assert torch.equal(a.state[p]["momentum_buffer"], b.state[q]["momentum_buffer"])
    assert not any(torch.equal(p, p0) for p, p0 in zip(ours, start, strict=True))  # they moved


def test_fp32_newton_schulz_is_close_to_float64_and_bf16_is_not():
    torch.manual_seed(0)
    coeffs = torch.optim.Muon([nn.Parameter(torch.zeros(2, 2))]).defaults["ns_coefficients"]
    for shape in [(96, 32), (32, 96)]:
        g = torch.randn(shape)
        before = g.clone()
        exact = newton_schulz(g.double(), coeffs, 5, 1e-7, torch.float64)
        fp32 = newton_schulz(g, coeffs, 5, 1e-7, torch.float32)
        bf16 = newton_schulz(g, coeffs, 5, 1e-7, torch.bfloat16)
        assert torch.equal(g, before)  # the input (Muon's momentum buffer) is left alone
        assert fp32.dtype == torch.float32 and fp32.shape == g.shape
        assert (fp32.double() - exact).abs().max() < 1e-5
        assert (bf16.double() - exact).abs().max() > 1e-3  # the precision fp32 buys
        s = torch.linalg.svdvals(exact)
        assert 0.5 < s.min() and s.max() < 1.3  # approximately orthogonal: US'V^T, S' ~ 1


def test_ns_dtype_auto_is_bf16_on_cuda_only():
    assert ns_dtype_for(torch.device("cpu"), "auto") == torch.float32
    assert ns_dtype_for(torch.device("cuda", 0), "auto") == torch.bfloat16
    assert ns_dtype_for(torch.device("cpu"), "bfloat16") == torch.bfloat16
    assert ns_dtype_for(torch.device("cuda"), "float32") == torch.float32
    model = Transformer(ModelConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=1, d_model=32))
    assert build_muon(model, MuonConfig())._inner[0].ns_dtype == "auto"
    assert build_muon(model, MuonConfig(ns_dtype="bfloat16"))._inner[0].ns_dtype == "bfloat16"
    with pytest.raises(ValueError, match="optim.ns_dtype must be auto, bfloat16 or float32"):
        MuonConfig(ns_dtype="fp16")


def test_same_shape_matrices_are_batched_and_the_update_is_unchanged():
    """Newton-Schulz runs once per shape (up to transposition) over a model's layers, and the
    weights after a few steps equal those of one matrix at a time up to float rounding (a batched
    matmul over contiguous copies may sum in another order than a plain one: ~1e-7 here)."""
    cfg = ModelConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=3, n_head=4, n_kv_head=2)
    model = Transformer(cfg)
    muon = build_muon(model, MuonConfig(ns_dtype="float32"))._inner[0]
    params = muon.param_groups[0]["params"]
    batches = ns_batches(params, lambda p: torch.float32)
    assert [len(b) for b in batches] == [3, 3, 3, 3]  # per layer: qkv, proj, fc, mlp proj
    assert all(len({tuple(sorted(p.shape)) for p in b}) == 1 for b in batches)
    assert [len(b) for b in ns_batches(params, lambda p: torch.float32, 0)] == [1] * 12
    assert len(ns_batches(params, lambda p: torch.float32, 2 * params[0].numel())) > 4  # capped
    tall, wide, square = torch.zeros(64, 32), torch.zeros(32, 64), torch.zeros(48, 48)
    pairs = ns_batches([tall, square, wide], lambda p: torch.float32)
    assert [[id(p) for p in b] for b in pairs] == [[id(tall), id(wide)], [id(square)]]
    x = torch.randint(0, VOCAB, (2, BLOCK))
    weights = {}
    for batch_elements in (0, 1 << 24):
        torch.manual_seed(0)
        model = Transformer(cfg)
        opt = build_muon(model, MuonConfig(ns_dtype="float32", weight_decay=0.1))
        opt._inner[0].ns_batch_elements = batch_elements
        for _ in range(3):
            model(x, x)[1].backward()
            opt.step()
            opt.zero_grad()
        weights[batch_elements] = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(*weights.values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_an_expert_bank_update_equals_its_experts_one_by_one():
    """A 3-D bank (experts, out, in) gets per expert exactly the update that expert's matrix
    alone gets (batched Newton-Schulz, per-matrix norm and lr factor)."""
    torch.manual_seed(0)
    for shape in [(4, 48, 16), (4, 16, 48)]:  # tall (w_fc-like) and wide (w_proj-like)
        bank = nn.Parameter(torch.randn(shape))
        alone = [nn.Parameter(bank.detach()[e].clone()) for e in range(shape[0])]
        kw = {"lr": 0.02, "weight_decay": 0.1, "ns_dtype": "float32"}
        other = nn.Parameter(torch.randn(8, 8))  # torch's constructor wants a 2-D matrix
        a = Muon([{"params": [other]}, {"params": [bank]}], **kw)
        b = Muon(alone, **kw)
        with pytest.raises(ValueError, match="at least one 2-D matrix"):
            Muon([{"params": [bank]}], **kw)
        for _ in range(3):
            g = torch.randn(shape)
            bank.grad = g.clone()
            for e, p in enumerate(alone):
                p.grad = g[e].clone()
            a.step()
            b.step()
        for e, p in enumerate(alone):
            torch.testing.assert_close(bank[e], p, rtol=0, atol=1e-6)
        assert not torch.equal(bank[0], bank[1])


def test_moe_expert_banks_go_to_muon_unless_moe_experts_adamw():
    model = Transformer(tiny_moe_config(first_k_dense=1))
    moe = model.blocks[1].mlp
    banks = {id(moe.w_fc), id(moe.w_proj)}
    muon, adamw = muon_param_groups(model, MuonConfig())
    assert [_ids(g["params"]) for g in muon][1] == banks  # a group of their own, after matrices
    assert all(p.ndim == 2 for p in muon[0]["params"])
    assert id(moe.router.weight) in set().union(*(_ids(g["params"]) for g in adamw))
    muon2, adamw2 = muon_param_groups(model, MuonConfig(moe_experts="adamw"))
    assert len(muon2) == 1 and banks <= set().union(*(_ids(g["params"]) for g in adamw2))
    opt = build_muon(model, MuonConfig(lr=0.02))
    assert opt.param_groups[1]["lr"] == 0.02 and opt.param_groups[1]["momentum"] == 0.95
    x = torch.randint(0, VOCAB, (2, BLOCK))
    before = moe.w_fc.detach().clone()
    model(x, x)[1].backward()
    opt.step()
    assert not torch.equal(before, moe.w_fc)
    assert opt.state[moe.w_fc]["momentum_buffer"].shape == moe.w_fc.shape
    # a state saved with the banks under AdamW does not fit: one line naming the key
    old = build_muon(model, MuonConfig(moe_experts="adamw"))
    with pytest.raises(ValueError, match="optim.moe_experts"):
        build_muon(model, MuonConfig()).load_state_dict(old.state_dict())
    with pytest.raises(ValueError, match="optim.moe_experts must be muon or adamw"):
        MuonConfig(moe_experts="sgd")


@pytest.mark.parametrize("tie", [True, False])
def test_which_tensors_go_where(tie):
    model = Transformer(
        ModelConfig(
            vocab_size=VOCAB,
            block_size=BLOCK,
            n_layer=2,
            n_head=2,
            d_model=32,
            bias=True,
            norm="layernorm",
            tie_embeddings=tie,
            qk_norm=True,
        )
    )
    muon, adamw = muon_param_groups(model, MuonConfig(weight_decay=0.05, adamw_weight_decay=0.2))
    m = _ids(muon[0]["params"])
    a = [_ids(g["params"]) for g in adamw]
    assert not any(m & s for s in a)
    assert m.union(*a) == _ids(model.parameters())  # every tensor exactly once (tied: once)
    expected = set()
    for b in model.blocks:
        expected |= {
            id(b.attn.qkv.weight),
            id(b.attn.proj.weight),
            id(b.mlp.fc.weight),
            id(b.mlp.proj.weight),
        }
    assert m == expected  # exactly the hidden matrices
    assert all(p.ndim == 2 for p in muon[0]["params"])
    rest = set().union(*a)
    for p in (
        model.tok_emb.weight,
        model.lm_head.weight,
        model.norm.weight,
        model.norm.bias,
        model.blocks[0].attn.qkv.bias,
        model.blocks[0].attn.q_norm.weight,
    ):
        assert id(p) in rest
    assert muon[0]["weight_decay"] == 0.05
    # AdamW decays matrices only: an untied LM head, not embeddings, norms or biases
    decayed = set().union(*(s for s, g in zip(a, adamw, strict=True) if g["weight_decay"] == 0.2))
    assert decayed == (set() if tie else {id(model.lm_head.weight)})


def test_per_group_hyperparameters_and_one_schedule():
    model = Transformer(
        ModelConfig(
            vocab_size=VOCAB,
            block_size=BLOCK,
            n_layer=1,
            n_head=2,
            d_model=32,
            tie_embeddings=False,
        )
    )
    cfg = MuonConfig(
        lr=0.02,
        momentum=0.9,
        weight_decay=0.01,
        adamw_lr=1e-3,
        adamw_betas=(0.8, 0.99),
        decay_embeddings=True,
        adamw_weight_decay=0.3,
    )
    opt = build_muon(model, cfg)
    assert isinstance(opt, torch.optim.Optimizer)
    muon_g, *adamw_g = opt.param_groups
    assert (muon_g["lr"], muon_g["momentum"], muon_g["weight_decay"]) == (0.02, 0.9, 0.01)
    assert all(g["lr"] == 1e-3 and g["betas"] == (0.8, 0.99) for g in adamw_g)
    assert {g["weight_decay"] for g in adamw_g} == {0.3, 0.0}  # embeddings decayed, norms not
    sched = LambdaLR(
        opt, make_schedule(ScheduleConfig(name="cosine", warmup_steps=2, min_lr=0.002), cfg.lr, 10)
    )
    for _ in range(5):
        opt.step()
        sched.step()
    mult = sched.lr_lambdas[0](5)
    assert 0.1 < mult < 1.0
    assert muon_g["lr"] == pytest.approx(0.02 * mult)
    assert all(g["lr"] == pytest.approx(1e-3 * mult) for g in adamw_g)
    # the inner optimizers see the very same group dicts
    assert opt._inner[0].param_groups[0] is opt.param_groups[0]
    assert opt.step(lambda: torch.tensor(2.0)) == 2.0  # torch's closure contract


def _train(model, opt, batches):
    for x in batches:
        opt.zero_grad()
        model(x, x)[1].backward()
        opt.step()


def test_state_dict_round_trip_continues_exactly():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=1, n_head=2, d_model=32)
    batches = [torch.randint(0, VOCAB, (2, BLOCK)) for _ in range(6)]
    a = Transformer(cfg)
    b = Transformer(cfg)
    b.load_state_dict(a.state_dict())
    opt_a = build_muon(a, MuonConfig())
    _train(a, opt_a, batches)
    opt_b = build_muon(b, MuonConfig())
    _train(b, opt_b, batches[:3])
    state = opt_b.state_dict()
    assert len(state["state"]) == len(list(b.parameters()))  # momentum and Adam moments
    opt_c = build_muon(b, MuonConfig(lr=0.5))  # hyper-parameters come back from the state
    opt_c.load_state_dict(state)
    assert opt_c.param_groups[0]["lr"] == 0.02
    assert (
        opt_c._inner[0].state is opt_c.state
        and opt_c._inner[1].param_groups[0] is opt_c.param_groups[1]
    )
    _train(b, opt_c, batches[3:])
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), n


# ---------------------------------------------------------------------------- through Lightning
class _Data(L.LightningDataModule):
    """The same 8 counting sequences in every batch of 8 (so the data position after a resume
    cannot matter: this tests the optimizer state; data resume is tested in tests/e2e)."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        seq = (torch.randint(0, VOCAB, (8, 1), generator=g) + torch.arange(BLOCK + 1)) % VOCAB
        seq = seq.repeat(8, 1)
        self.x, self.y, self.batch_size = seq[:, :-1], seq[:, 1:], batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)


def _trainer(tmp_path, **kw) -> L.Trainer:
    return quiet_trainer(tmp_path, **{**kw})


def _module() -> LMModule:
    cfg = ModelConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=2, n_head=2, d_model=32)
    return LMModule(
        cfg,
        optim=MuonConfig(lr=0.02, adamw_lr=3e-3),
        schedule=ScheduleConfig(name="cosine", warmup_steps=1, total_steps=6),
    )


def test_gradient_accumulation_matches_large_batch(tmp_path):
    a, b = _module(), _module()
    torch.manual_seed(0)
    _trainer(tmp_path, max_steps=2).fit(a, datamodule=_Data(8))
    torch.manual_seed(0)
    _trainer(tmp_path, max_steps=2, accumulate_grad_batches=4).fit(b, datamodule=_Data(2))
    for (name, pa), pb in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        # Newton-Schulz runs in fp32 on CPU: only summation order differs
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-5, msg=name)


def test_exact_resume_from_checkpoint(tmp_path):
    torch.manual_seed(0)
    ref = _module()
    _trainer(tmp_path, max_steps=6).fit(ref, datamodule=_Data(8))
    torch.manual_seed(0)
    first = _module()
    t = _trainer(tmp_path, max_steps=3)
    t.fit(first, datamodule=_Data(8))
    t.save_checkpoint(tmp_path / "k3.ckpt")
    assert isinstance(t.optimizers[0], MuonAdamW)
    resumed = _module()
    _trainer(tmp_path, max_steps=6).fit(
        resumed, datamodule=_Data(8), ckpt_path=tmp_path / "k3.ckpt", weights_only=False
    )
    moved = False
    for (name, pr), p1, p2 in zip(
        ref.model.named_parameters(),
        first.model.parameters(),
        resumed.model.parameters(),
        strict=True,
    ):
        assert torch.equal(pr, p2), name
        moved |= not torch.equal(p1, p2)
    assert moved  # steps 4-6 changed the weights, so the equality above has teeth
    # the checkpoint's hyper-parameters rebuild a Muon module
    again = LMModule.load_from_checkpoint(tmp_path / "k3.ckpt", weights_only=False)
    assert again.optim_config == resumed.optim_config


_DTENSOR_SCRIPT = """
import os, torch, torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor
from nextok.optim.newton_schulz import Muon
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["PORT"])
dist.init_process_group("gloo", rank=0, world_size=1)
mesh = init_device_mesh("cpu", (1,))
torch.manual_seed(0)
plain = [nn.Parameter(torch.randn(s)) for s in [(24, 8), (3, 16, 8)]]
sharded = [nn.Parameter(distribute_tensor(p.detach().clone(), mesh, [Shard(0)])) for p in plain]
a, b = Muon([{"params": plain[:1]}, {"params": plain[1:]}]), Muon([{"params": sharded[:1]}, {"params": sharded[1:]}])
for _ in range(2):
    for p, q in zip(plain, sharded):
        p.grad = torch.randn_like(p)
        q.grad = distribute_tensor(p.grad.clone(), mesh, [Shard(0)])
    a.step(); b.step()
for p, q in zip(plain, sharded):
    assert torch.equal(p, q.full_tensor()), (p - q.full_tensor()).abs().max()
dist.destroy_process_group()
print("ok")
"""


def test_sharded_parameters_get_the_plain_update(tmp_path):
    """The DTensor path (FSDP2 / tensor parallel: all-gather, iterate, keep the shard) in one
    gloo process (own interpreter); 2-process FSDP2 and TP runs: tests/distributed (slow)."""
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-c", _DTENSOR_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PORT": str(port)},
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_config_dispatch_and_errors():
    assert isinstance(optim_config({"lr": 1e-3, "betas": [0.9, 0.95]}), AdamWConfig)
    assert isinstance(optim_config({"lr": 0.02, "momentum": 0.9}), MuonConfig)
    with pytest.raises(ValueError, match="match neither"):
        optim_config({"lr": 1e-3, "bogus": 1})
    with pytest.raises(ValueError, match="optim.adjust_lr_fn"):
        MuonConfig(adjust_lr_fn="fancy")
    with pytest.raises(ValueError, match="optim.momentum"):
        MuonConfig(momentum=1.0)
