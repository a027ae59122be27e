"""``nextok-generate ckpt=PATH prompt=...``: sample from a checkpoint, streaming to stdout.

The model config and tokenizer come from the checkpoint. Generated text goes to stdout as it is
produced (prompt first); the speed summary and errors go to stderr, so stdout stays pure text.
Bad input (missing checkpoint, too many tokens for ``block_size``, bad option) is a one-line
``nextok-generate: error: ...`` on stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nextok.cli._conf import conf_dir

DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}


class UsageError(Exception):
    """Bad input; reported as one line."""


def resolve_device(name: str):
    import torch

    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"device={name!r} is not a device (use auto, cpu, cuda or cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device={name!r} but CUDA is not available here; use device=cpu")
    return device


def resolve_dtype(name: str, device):
    import torch

    name = str(name)
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if name not in DTYPES:
        raise UsageError(f"dtype={name!r} is not one of auto, {', '.join(sorted(DTYPES))}")
    return getattr(torch, DTYPES[name])


def unescape(text: str) -> str:
    """``\\n`` -> newline, ``\\t`` -> tab: how to type them on a command line or in a prompt file."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


def read_prompts(cfg: DictConfig) -> list[str]:
    """``prompt`` or ``prompt_file`` (one prompt per line); ``\\n`` and ``\\t`` are unescaped."""
    if cfg.prompt is not None and cfg.prompt_file is not None:
        raise UsageError("give prompt=... or prompt_file=..., not both")
    if cfg.prompt_file is None:
        return [unescape("" if cfg.prompt is None else str(cfg.prompt))]
    path = Path(str(cfg.prompt_file))
    if not path.is_file():
        raise UsageError(f"prompt_file={path} not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    prompts = [unescape(ln) for ln in lines if ln.strip()]
    if not prompts:
        raise UsageError(f"prompt_file={path} holds no prompts (one per line)")
    return prompts


def run(cfg: DictConfig) -> dict:
    """Load, generate and stream; returns the speed summary (also printed to stderr)."""
    import torch

    from nextok.checkpoint import load_checkpoint
    from nextok.generation import compile_decode_step, generate_text, make_generator

    if not cfg.ckpt:
        raise UsageError("ckpt=PATH is required (a .ckpt file written by nextok-train)")
    prompts = read_prompts(cfg)
    if not isinstance(cfg.num_samples, int) or cfg.num_samples < 1:
        raise UsageError(f"num_samples must be a positive integer, got {cfg.num_samples!r}")
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    try:
        loaded = load_checkpoint(cfg.ckpt, device=device, dtype=dtype)
    except (FileNotFoundError, IsADirectoryError, ValueError) as err:
        raise UsageError(str(err)) from err
    except Exception as err:  # e.g. not a torch file at all
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"cannot load checkpoint {cfg.ckpt}: {first}") from err
    model, tokenizer = loaded.model, loaded.tokenizer

    options = dict(
        temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, min_p=cfg.min_p,
        repetition_penalty=cfg.repetition_penalty, stop=[unescape(str(s)) for s in cfg.stop or []],
        eos=loaded.special.eos, bos=loaded.special.bos if loaded.special.add_bos else None,
    )
    generator = make_generator(cfg.seed, device)
    out = sys.stdout

    n_tokens = 0

    def emit(_row: int, text: str) -> None:
        out.write(text)
        out.flush()

    def count(step: list[int | None]) -> None:
        nonlocal n_tokens
        n_tokens += step[0] is not None

    if cfg.compile:
        t = time.perf_counter()
        options["decode_step"] = compile_decode_step(model)
        # warm-up (compilation) outside the timed runs, from a separate random stream
        try:
            generate_text(model, tokenizer, prompts[:1], min(3, cfg.max_new_tokens), **options)
        except ValueError as err:
            raise UsageError(str(err)) from err
        print(f"compiled the decode step in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    seconds = 0.0
    total = len(prompts) * cfg.num_samples
    for i, prompt in enumerate(prompts):
        for s in range(cfg.num_samples):
            if total > 1:
                out.write(f"\n--- prompt {i + 1}/{len(prompts)}, sample {s + 1}/{cfg.num_samples} ---\n")
            out.write(prompt)
            out.flush()
            t = time.perf_counter()
            try:
                generate_text(
                    model, tokenizer, [prompt], cfg.max_new_tokens, generator=generator,
                    on_text=emit, on_token=count,
                    **options,
                )
            except ValueError as err:
                raise UsageError(str(err)) from err
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - t
            out.write("\n")
            out.flush()
    rate = n_tokens / seconds if seconds > 0 else float("nan")
    print(
        f"generated {n_tokens} tokens in {seconds:.2f} s: {rate:.1f} tokens/s "
        f"({device.type}, {str(dtype).removeprefix('torch.')}"
        f"{', compiled' if cfg.compile else ''})",
        file=sys.stderr,
    )
    return dict(tokens=n_tokens, seconds=seconds, tokens_per_s=rate)


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="generate")
def _main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except UsageError as err:
        print(f"nextok-generate: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        sys.exit(130)


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
