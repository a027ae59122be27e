"""nextok-eval's table: one column per task metric; acc_pmi only for tasks that computed it."""

from __future__ import annotations

from nextok.cli.evaluate import table


def _row(ckpt: str, pmi: float | None) -> dict:
    task = {"acc": 0.3, "acc_norm": 0.31, "acc_pmi": pmi, "n": 300, "chance": 0.25}
    hub = {"acc": 0.5, "acc_norm": 0.52, "acc_pmi": None, "n": 10, "chance": 0.5}
    return {
        "ckpt": ckpt,
        "loss": 4.8,
        "perplexity": 121.5,
        "bpb": 1.97,
        "tasks": {"stdlib_next_line": task, "piqa": hub},
    }


def test_acc_pmi_column_only_where_computed():
    lines = table([_row("a.ckpt", 0.54), _row("b.ckpt", None)]).splitlines()
    head = lines[0].split()
    assert head == [
        "ckpt",
        "loss",
        "perplexity",
        "bpb",
        "piqa/acc",
        "piqa/acc_norm",
        "stdlib_next_line/acc",
        "stdlib_next_line/acc_norm",
        "stdlib_next_line/acc_pmi",
    ]
    assert lines[1].split()[-1] == "0.5400" and lines[2].split()[-1] == "-"
    assert lines[1].split()[4:6] == ["0.5000", "0.5200"]
