"""Hugging Face borders, family by family: import, init_from, export, AutoTokenizer ids and
lm-eval agreement, each a measured figure (CPU, fp32, random tiny models).

    python benchmarks/hf_borders.py [--families llama,mistral] [--skip-init-from]

Per family: a random ``transformers`` model (a sliding window of 8 < 32 tokens where the family
has one) saved with ``save_pretrained`` and a nextok byte-level BPE (qwen2: with Qwen2's
normaliser and pre-tokenizer, the only tokenizer a qwen2 folder can hold exactly); ``import``: max |logit diff|
of nextok's import vs transformers; ``init_from``: ``nextok-train init_from=DIR optim.lr=0``
(2 steps) then ``nextok-export``, transformers on the export vs the source; ``export``: the
model_type written and transformers on it vs the source; ``tok``: stdlib files (of 40) that
AutoTokenizer on the export encodes differently from nextok; ``lm-eval``: max per-choice
|log-likelihood diff| of lm-evaluation-harness (``hf`` backend) vs nextok-eval's scoring on 60
local multiple-choice examples, and examples whose acc / acc_norm differ.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # helpers
sys.path.insert(0, str(ROOT / "tests" / "evals"))
sys.path.insert(0, str(ROOT / "tests" / "hf"))

SMALL = dict(
    vocab_size=512,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
)
MOE = dict(SMALL, intermediate_size=16, num_experts_per_tok=2)


def cases(transformers) -> dict:
    return {
        "llama": (transformers.LlamaConfig, SMALL),
        "mistral": (transformers.MistralConfig, dict(SMALL, sliding_window=8)),
        "qwen2": (
            transformers.Qwen2Config,
            dict(SMALL, use_sliding_window=True, sliding_window=8, max_window_layers=1),
        ),
        "qwen3": (
            transformers.Qwen3Config,
            dict(SMALL, head_dim=16, use_sliding_window=True, sliding_window=8),
        ),
        "gpt2": (
            transformers.GPT2Config,
            dict(vocab_size=512, n_embd=32, n_layer=2, n_head=4, n_positions=128),
        ),
        "qwen3_moe": (
            transformers.Qwen3MoeConfig,
            dict(
                MOE,
                num_experts=4,
                moe_intermediate_size=16,
                use_sliding_window=True,
                sliding_window=8,
            ),
        ),
        "mixtral": (transformers.MixtralConfig, dict(MOE, num_local_experts=4, sliding_window=8)),
    }


def logits_of(model, idx) -> torch.Tensor:
    with torch.no_grad():
        out = model(idx)
    return out[0] if isinstance(out, tuple) else out.logits


def main() -> None:
    import transformers
    from test_export_tokenizer import _texts, _tokenizer
    from test_lm_eval_agreement import _lm_eval, _rows

    from helpers.tiny_models import random_hf_model
    from nextok.checkpoint import load_checkpoint
    from nextok.data.tokenization.tokenizer import hf_tokenizer_config, special_tokens
    from nextok.evals import context_prefix, load_task, loglikelihoods
    from nextok.evals.scoring import task_requests
    from nextok.hf import export_hf, import_hf

    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default=",".join(cases(transformers)))
    ap.add_argument("--skip-init-from", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    idx = torch.randint(0, 512, (2, 32))
    print("| family | import | init_from (lr=0) -> export | export | AutoTokenizer | lm-eval |")
    print("|---|---|---|---|---|---|")
    for fam in args.families.split(","):
        cls, kw = cases(transformers)[fam]
        # a nextok byte-level BPE on stdlib (vocab 400 <= 512); for qwen2 one with Qwen2's own
        # pipeline (transformers rebuilds a qwen2 folder's tokenizer as Qwen2Tokenizer)
        tok = _tokenizer(qwen_pipeline=fam == "qwen2")
        tmp = Path(tempfile.mkdtemp(prefix=f"hf_{fam}_"))
        ref = random_hf_model(cls, **kw)
        ref.save_pretrained(tmp / "src")
        if "max_window_layers" in kw:
            c = json.loads((tmp / "src" / "config.json").read_text())
            c.setdefault("max_window_layers", kw["max_window_layers"])
            (tmp / "src" / "config.json").write_text(json.dumps(c))
        tok.save(str(tmp / "src" / "tokenizer.json"))
        (tmp / "src" / "tokenizer_config.json").write_text(
            json.dumps(hf_tokenizer_config(special_tokens(tok)))
        )
        want = logits_of(ref, idx)
        ours = import_hf(tmp / "src")
        d_import = (logits_of(ours, idx) - want).abs().max().item()
        init = "skipped"
        if not args.skip_init_from:
            init = init_from(tmp, want, idx)
        loaded = load_checkpoint(tmp / "src")
        out = export_hf(
            loaded.model,
            tmp / "out",
            loaded.tokenizer,
            loaded.special,
            prefer=loaded.meta["hf_family"],
        )
        mt = json.loads((out / "config.json").read_text())["model_type"]
        back = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
        d_export = (logits_of(back, idx) - want).abs().max().item()
        auto = transformers.AutoTokenizer.from_pretrained(out, model_max_length=10**9)
        n_tok = sum(auto(t).input_ids != tok.encode(t).ids for t in _texts())
        data = tmp / "mc.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
        samples, _ = _lm_eval(out, data, tmp)
        spec = {
            "data_files": str(data),
            "context": "{context}",
            "choices": "choices",
            "gold": "gold",
        }
        examples = load_task("mc", spec)
        ll = loglikelihoods(
            loaded.model,
            task_requests(loaded.tokenizer, examples, context_prefix(tok, loaded.special)),
            block_size=loaded.config.block_size,
        )
        theirs = [float(x[0][0]) for s in samples for x in s["resps"]]
        d_ll = max(abs(a - b) for a, b in zip(ll, theirs, strict=True))
        bad = pos = 0
        for s, ex in zip(samples, examples, strict=True):
            k = len(ex.choices)
            m = ll[pos : pos + k]
            norm = [v / len(c.removeprefix(" ")) for v, c in zip(m, ex.choices)]
            acc = float(max(range(k), key=m.__getitem__) == ex.gold)
            accn = float(max(range(k), key=norm.__getitem__) == ex.gold)
            bad += (acc != s["acc"]) or (accn != s["acc_norm"])
            pos += k
        print(
            f"| {fam} | {d_import:.1e} | {init} | as {mt}: {d_export:.1e} | "
            f"{n_tok}/40 files differ | {d_ll:.1e}, {bad}/{len(examples)} examples differ |",
            flush=True,
        )


def init_from(tmp: Path, want: torch.Tensor, idx: torch.Tensor) -> str:
    """``nextok-train init_from`` at lr=0 for 2 steps, then export; transformers' logits diff."""
    import transformers
    from test_export_tokenizer import _texts

    corpus = tmp / "corpus.txt"
    corpus.write_text("".join(_texts()[:3]))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = [
        sys.executable,
        "-m",
        "nextok.cli.train",
        f"init_from={tmp / 'src'}",
        "data=local_text",
        f"data.data_files={corpus}",
        "data.val_fraction=0.05",
        "data.document_unit=line",
        "data.batch_size=2",
        "model.block_size=32",
        "optim.lr=0",
        "schedule.warmup_steps=0",
        "schedule.min_lr=0",
        "trainer.max_steps=2",
        "trainer.val_check_interval=1",
        "callbacks.sampling=null",
        "tasks=[]",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp / 'run'}",
        "print_config=false",
    ]
    r = subprocess.run(run, capture_output=True, text=True, env=env)
    if r.returncode:
        return "failed: " + (r.stderr.strip().splitlines() or ["?"])[-1][:80]
    ckpt = tmp / "run" / "checkpoints" / "last.ckpt"
    e = subprocess.run(
        [sys.executable, "-m", "nextok.cli.export", f"ckpt={ckpt}", f"out={tmp / 'init_out'}"],
        capture_output=True,
        text=True,
        env=env,
    )
    if e.returncode:
        return "export failed: " + (e.stderr.strip().splitlines() or ["?"])[-1][:80]
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp / "init_out").eval()
    mt = json.loads((tmp / "init_out" / "config.json").read_text())["model_type"]
    return f"as {mt}: {(logits_of(back, idx) - want).abs().max().item():.1e}"


if __name__ == "__main__":
    main()
