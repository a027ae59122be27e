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
from nextok.cli.draft import acceptance_note, make_proposer
from nextok.cli.errors import CliError, one_line_errors
from nextok.cli.literal_args import read_prompt_file, split_literal_args, unescape


def resolve_device(name: str):
    import torch

    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise CliError(f"device={name!r} is not a device (use auto, cpu, cuda or cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"device={name!r} but CUDA is not available here; use device=cpu")
    return device


def resolve_dtype(name: str, device):
    import torch

    from nextok.dtypes import DTYPES, as_dtype

    name = str(name)
    if name == "auto":
        return (
            torch.bfloat16
            if device.type == "cuda" and torch.cuda.is_bf16_supported()
            else torch.float32
        )
    try:
        return as_dtype(name)
    except ValueError as err:
        raise CliError(f"dtype={name!r} is not one of auto, {', '.join(sorted(DTYPES))}") from err


def read_prompts(cfg: DictConfig, literal: dict[str, list[str]] | None = None) -> list[str]:
    """The prompts: ``prompt=`` values as typed (``literal``, from the command line), else
    ``cfg.prompt`` (Python callers), or ``prompt_file`` (one per line; ``-`` = stdin)."""
    typed = (literal or {}).get("prompt") or []
    given = typed or ([] if cfg.prompt is None else [str(cfg.prompt)])
    if given and cfg.prompt_file is not None:
        raise CliError("give prompt=... or prompt_file=..., not both")
    if cfg.prompt_file is None:
        return [unescape(p) for p in given] or [""]
    name = str(cfg.prompt_file)
    if name != "-" and not Path(name).is_file():
        raise CliError(f"prompt_file={name} not found")
    try:
        prompts = read_prompt_file(name)
    except UnicodeDecodeError as err:
        raise CliError(f"prompt_file={name} is not UTF-8 text (byte {err.start})") from err
    if not prompts:
        raise CliError(f"prompt_file={name} holds no prompts (one per line)")
    return prompts


def fit_max_new_tokens(prompt_lens: list[int], max_new_tokens: int, block_size: int) -> int:
    """``max_new_tokens`` clipped so the longest prompt + new tokens fits ``block_size``, with a
    one-line notice on stderr; a prompt that fills the block alone is an error."""
    longest = max(prompt_lens)
    room = block_size - longest
    if room <= 0:
        raise CliError(
            f"prompt of {longest} tokens leaves no room to generate: model.block_size is "
            f"{block_size}; shorten the prompt"
        )
    if max_new_tokens > room:
        print(
            f"nextok-generate: note: max_new_tokens={max_new_tokens} clipped to {room}: the "
            f"{longest}-token prompt + new tokens must fit model.block_size={block_size}",
            file=sys.stderr,
        )
        return room
    return max_new_tokens


def run(cfg: DictConfig, literal: dict[str, list[str]] | None = None) -> dict:
    """Load, generate and stream; returns the speed summary (also printed to stderr).

    ``literal``: ``{"prompt": [...], "stop": [...]}`` as typed on the command line (see
    :mod:`nextok.cli.literal_args`); Python callers may set ``cfg.prompt``/``cfg.stop`` instead.
    """
    import torch

    from nextok.checkpoint import load_checkpoint
    from nextok.generation import (
        SamplingParams,
        compile_decode_step,
        encode_prompt,
        generate_text,
        make_generator,
        quantize_model,
    )
    from nextok.generation.quantize import check_compile, check_quantize, speed_note

    if not cfg.ckpt:
        raise CliError("ckpt=PATH is required (a .ckpt file written by nextok-train)")
    prompts = read_prompts(cfg, literal)
    if not isinstance(cfg.num_samples, int) or cfg.num_samples < 1:
        raise CliError(f"num_samples must be a positive integer, got {cfg.num_samples!r}")
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    try:
        loaded = load_checkpoint(
            cfg.ckpt,
            device=device,
            dtype=dtype,
            block_size=cfg.get("block_size"),
            verify=bool(cfg.get("verify", True)),
            eos_token=cfg.data.eos_token,
            add_bos=cfg.data.add_bos,
        )
    except (FileNotFoundError, IsADirectoryError, ValueError) as err:
        raise CliError(str(err)) from err
    except Exception as err:  # e.g. not a torch file at all
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CliError(f"cannot load checkpoint {cfg.ckpt}: {first}") from err
    model, tokenizer = loaded.model, loaded.tokenizer
    quantize = cfg.get("quantize")
    try:
        check_compile(check_quantize(quantize), bool(cfg.compile))
        quantize_model(model, quantize, device)
    except ValueError as err:
        raise CliError(str(err)) from err
    note = speed_note(quantize, dtype, bool(cfg.compile), device.type)
    if note:
        print(f"nextok-generate: note: {note}", file=sys.stderr)
    proposer = make_proposer(cfg, loaded, device, dtype, quantize)
    eos, bos = loaded.special.eos, loaded.special.bos if loaded.special.add_bos else None
    try:
        lens = [len(encode_prompt(tokenizer, p, eos=eos, bos=bos)) for p in prompts]
    except ValueError as err:
        raise CliError(str(err)) from err
    if not isinstance(cfg.max_new_tokens, int) or cfg.max_new_tokens < 0:
        raise CliError(f"max_new_tokens must be a non-negative integer, got {cfg.max_new_tokens!r}")
    max_new_tokens = fit_max_new_tokens(lens, cfg.max_new_tokens, model.config.block_size)

    stops = [*(literal or {}).get("stop", []), *(str(s) for s in cfg.stop or [])]
    try:  # check the sampling options before anything is printed
        sampling = SamplingParams.from_options(cfg)
    except (TypeError, ValueError) as err:
        raise CliError(str(err)) from err
    options = dict(sampling=sampling, stop=[unescape(s) for s in stops], eos=eos, bos=bos)
    if proposer is not None:
        if cfg.compile:
            raise CliError("compile=true compiles the plain decode step; drop it with draft=...")
        if sampling.repetition_penalty != 1.0:
            raise CliError("repetition_penalty is not supported with draft=...; set it to 1.0")
        options["proposer"] = proposer
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
            generate_text(model, tokenizer, prompts[:1], min(3, max_new_tokens), **options)
        except ValueError as err:
            raise CliError(str(err)) from err
        print(f"compiled the decode step in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    seconds = 0.0
    total = len(prompts) * cfg.num_samples
    for i, prompt in enumerate(prompts):
        for s in range(cfg.num_samples):
            if total > 1:
                out.write(
                    f"\n--- prompt {i + 1}/{len(prompts)}, sample {s + 1}/{cfg.num_samples} ---\n"
                )
            out.write(prompt)
            out.flush()
            t = time.perf_counter()
            try:
                generate_text(
                    model,
                    tokenizer,
                    [prompt],
                    max_new_tokens,
                    generator=generator,
                    on_text=emit,
                    on_token=count,
                    **options,
                )
            except ValueError as err:
                raise CliError(str(err)) from err
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - t
            out.write("\n")
            out.flush()
    rate = n_tokens / seconds if seconds > 0 else float("nan")
    print(
        f"generated {n_tokens} tokens in {seconds:.2f} s: {rate:.1f} tokens/s "
        f"({device.type}, {str(dtype).removeprefix('torch.')}"
        f"{', compiled' if cfg.compile else ''}{f', {quantize}' if quantize else ''})",
        file=sys.stderr,
    )
    if proposer is not None:
        print(acceptance_note(cfg.draft, proposer), file=sys.stderr)
    return dict(tokens=n_tokens, seconds=seconds, tokens_per_s=rate)


# prompt=/stop= values exactly as typed (main() takes them out of argv before Hydra parses it)
_LITERAL_ARGS: dict[str, list[str]] = {}


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="generate")
def _main(cfg: DictConfig) -> None:
    with one_line_errors("nextok-generate"):  # Ctrl-C: end the streamed line, exit 130
        run(cfg, _LITERAL_ARGS)


def main() -> None:
    # prompt=/stop= are free text: taken out before Hydra's override grammar sees them
    sys.argv[1:], found = split_literal_args(sys.argv[1:])
    _LITERAL_ARGS.update(found)
    _main()


if __name__ == "__main__":
    main()
