"""What a new user meets after the first run: the final validation figure, nextok-eval
reproducing it, safe checkpoint loading, and nextok-generate taking any text as typed."""

from __future__ import annotations

import csv
import re

import pytest
import torch

from helpers.cli import cli, ok, one_line_error, tiny_args
from helpers.sharded_payload import save_dcp
from nextok.checkpoint import UnsafeCheckpointError, load_checkpoint
from nextok.checkpoint.consolidate import consolidate


@pytest.fixture
def run(tiny_run):
    """The shared tiny real training run (its own BPE): tests/e2e/conftest.py."""
    return tiny_run


def csv_rows(run_dir, key):
    rows = []
    for f in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        rows += [r for r in csv.DictReader(f.open()) if r.get(key)]
    return rows


def test_final_validation_is_the_whole_split(run):
    """nextok-eval reproducing this figure: test_eval_split.py."""
    out = run["out"]
    # periodic validations are on a named subset; the final figure is the whole split
    assert "val/loss" in out and "on a fixed subset of the held-out split" in out
    final = [ln for ln in out.splitlines() if ln.startswith("[nextok] final val loss")]
    assert len(final) == 1 and "on the whole held-out split" in final[0], out[-2000:]
    rows = csv_rows(run["dir"], "val/loss")
    last = rows[-1]  # the final whole-split validation is logged last
    assert float(last["val/tokens"]) > 10 * float(rows[0]["val/tokens"])  # subset << whole split
    assert f"{int(float(last['val/tokens'])):,} tokens" in final[0]


def _evil_pickle(path, marker):
    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state_dict": {}, "nextok": {"model_config": {}, "x": Payload()}}, path)


def test_untrusted_checkpoint_is_refused_and_runs_no_code(run, tmp_path):
    evil, marker = tmp_path / "evil.ckpt", tmp_path / "pwned"
    _evil_pickle(evil, marker)
    one_line_error(
        cli("nextok-generate", f"ckpt={evil}"), 2, "refusing to load", "weights_only=True"
    )
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):  # eval, export use it
        load_checkpoint(evil)
    one_line_error(
        cli("nextok-train", *tiny_args(tmp_path / "r", None, f"ckpt_path={evil}")),
        2,
        "refusing to load",
    )
    # a consolidate input whose (genuine) .metadata passes and whose meta.pt is the payload
    folder = save_dcp({"state_dict": {"model.w": torch.ones(2)}}, tmp_path / "sharded.ckpt")
    _evil_pickle(folder / "meta.pt", marker)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        consolidate(folder)
    assert not marker.exists()  # no payload ran
    # ... while the real checkpoint loads with weights_only=True as it is
    assert torch.load(run["ckpt"], weights_only=True)["nextok"]["tokenizer_json"]


def test_generate_default_length_is_clipped_with_a_notice(run):
    # the README's next step: default max_new_tokens=128 on a block_size=32 model
    proc = ok(cli("nextok-generate", f"ckpt={run['ckpt']}", "prompt=def "))
    assert proc.stdout.startswith("def ")
    notes = [ln for ln in proc.stderr.splitlines() if "clipped" in ln]
    assert len(notes) == 1, proc.stderr
    m = re.fullmatch(
        r"nextok-generate: note: max_new_tokens=128 clipped to (\d+): the (\d+)-token "
        r"prompt \+ new tokens must fit model.block_size=32",
        notes[0],
    )
    assert m and int(m[1]) + int(m[2]) == 32, notes
    assert f"generated {m[1]} tokens" in proc.stderr or "generated" in proc.stderr


ODD = ["def main(", "f(x, y) = {'a': [1, 2]}  # c", 'say "hi": é ∑ \\n next line', "a=b,c=d"]


def test_any_text_works_as_prompt_and_stop_as_typed(run):
    common = (f"ckpt={run['ckpt']}", "max_new_tokens=12", "temperature=0", "device=cpu")
    proc = ok(cli("nextok-generate", *common, *(f"prompt={p}" for p in ODD)))
    out = proc.stdout
    for p in ODD:  # every prompt echoed exactly, with \n typed as an escape turned into a newline
        assert p.replace("\\n", "\n") in out, (p, out)
    # stop strings: cut the greedy continuation of the first prompt before a piece of it
    first = out.split("--- prompt 2/")[0].split("def main(", 1)[1]
    piece = first[2:5]
    assert len(piece) == 3
    cut = ok(
        cli("nextok-generate", *common, "prompt=def main(", f"stop={piece}", "stop=)],{=:#'\"")
    )
    assert cut.stdout == "def main(" + first[: first.index(piece)] + "\n"
    # prompt_file=- reads the prompts from stdin, one per line
    piped = ok(cli("nextok-generate", *common, "prompt_file=-", input="def main(\nimport \n"))
    assert piped.stdout.count("--- prompt ") == 2 and "\ndef main(" in piped.stdout
    # an error prints nothing to stdout (no prompt echoed first)
    bad = cli("nextok-generate", *common, "prompt=def ", "top_p=2")
    one_line_error(bad, 2, "top_p must be in (0, 1]")
    assert bad.stdout == ""


def test_local_folder_run_console_and_train_log(tmp_path):
    """A folder of text files as data (one document per file), with the progress bar and model
    summary on: samples start from held-out documents, and the console is free of Lightning's
    noise; train.log holds what the console showed."""
    corpus = tmp_path / "corpus"
    for i in range(60):
        sub = corpus / f"part{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"doc{i:02d}.txt").write_text(
            f"Notice {i}: permission is granted to copy file {i}.\n\n" * 8 + f"End of file {i}.\n"
        )
    run = tmp_path / "run"
    args = [a for a in tiny_args(run) if not a.startswith(("trainer.enable_", "data.vocab_size"))]
    proc = ok(
        cli(
            "nextok-train",
            *args,
            "data=local_text",
            f"data.data_files={corpus}",
            "data.vocab_size=300",
            "data.val_fraction=0.05",
            "callbacks.sampling.prompt_tokens=3",
        )
    )
    out = proc.stdout + proc.stderr
    # folder read recursively, one document per file: 3 held-out files; prompts are their openings
    rows = list(csv.DictReader(next(run.glob("csv/version_0/samples.csv")).open()))
    prompts = [r["prompt"] for r in rows]
    assert len(prompts) == 3 and all(p.startswith("Notice ") for p in prompts), prompts
    docs = {f.read_text() for f in corpus.rglob("*.txt")}
    assert all(any(d.startswith(p) for d in docs) for p in prompts)
    # console: a short start-up summary, no config tree, no Lightning noise
    assert "_target_" not in out  # the config tree is in config.yaml, not on the console
    for noise in ("LeafSpec", "litlogger", "v_num", "/-2", "Total Flops", "`srun`"):
        assert noise not in out, noise
    assert "M training FLOPs per token at block_size 32" in out
    log = (run / "train.log").read_text()
    for line in ("[nextok] run dir:", "[nextok] final val loss", "=== samples at step 8 ==="):
        assert line in log and line in out


def test_bad_input_is_one_line_and_leaves_no_run_dir(tmp_path):
    """A value the config check refuses: test_train.py's test_out_of_range_value_is_refused_..."""
    runs = tmp_path / "runs"
    one_line_error(  # a value the constructor refuses (not Hydra's 3-line instantiate message)
        cli("nextok-train", *tiny_args(runs / "c"), "module.compile_mode=bad"),
        2,
        "module.compile_mode must be one of ('blocks', 'model'), got 'bad'",
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ok.txt").write_text("fine text\n" * 50)
    (tmp_path / "data" / "blob.bin").write_bytes(b"header" + bytes(range(128, 256)))
    one_line_error(
        cli(
            "nextok-train",
            *tiny_args(runs / "b"),
            "data=local_text",
            f"data.data_files={tmp_path / 'data'}",
        ),
        2,
        f"{tmp_path / 'data' / 'blob.bin'} is not UTF-8 text (byte 6 of 134",
        "data.encoding_errors=replace",
    )
    assert not runs.exists() or not any(runs.iterdir())  # no empty run dirs left behind
