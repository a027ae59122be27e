"""nextok.cli.errors: the one way every command turns a failure into one line and an exit status."""

from __future__ import annotations

import pytest

from nextok.cli.errors import CliError, one_line_errors


def _exit(capsys, exc: BaseException, **kwargs) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stop:
        with one_line_errors("nextok-x", **kwargs):
            raise exc
    return stop.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "exc,code",
    [
        (ValueError("optim.lr='fast' is not a number"), 2),
        (FileNotFoundError("ckpt_path=/nope does not exist"), 2),
        (IsADirectoryError("out is a folder"), 2),
        (CliError("bad prompt"), 2),
        (CliError("disk full", exit_code=1), 1),
    ],
)
def test_one_line_and_status(capsys, monkeypatch, exc, code):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    got, err = _exit(capsys, exc)
    assert got == code
    assert err == f"nextok-x: error: {exc}\n"  # one line, no traceback


def test_extra_codes_are_tried_first(capsys):
    class Diverged(FloatingPointError):
        pass

    assert _exit(capsys, Diverged("loss is nan"), exit_codes=[(Diverged, 3)])[0] == 3
    assert _exit(capsys, TimeoutError("waited"), exit_codes=[((TimeoutError,), 2)])[0] == 2


def test_other_errors_keep_their_traceback():
    with pytest.raises(RuntimeError, match="a bug"):
        with one_line_errors("nextok-x"):
            raise RuntimeError("a bug")


def test_full_traceback_on_request(capsys, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    code, err = _exit(capsys, ValueError("bad value"))
    assert code == 2
    assert "Traceback" in err and err.endswith("nextok-x: error: bad value\n")


def test_ctrl_c(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert _exit(capsys, KeyboardInterrupt()) == (130, "\n")  # streamed output: just end the line
    code, err = _exit(capsys, KeyboardInterrupt(), interrupted="interrupted; nothing saved")
    assert (code, err) == (130, "nextok-x: error: interrupted; nothing saved\n")


class Picky:
    def __init__(self, mode: str) -> None:
        if mode not in ("a", "b"):
            raise ValueError(f"module.mode must be one of ('a', 'b'), got {mode!r}")


def test_a_value_a_constructor_refuses_names_the_node(capsys, monkeypatch):
    """Hydra's instantiate wraps the constructor's ValueError in a 3-line message; the commands
    report it as one line naming the config node."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    cfg = OmegaConf.create({"module": {"_target_": f"{__name__}.Picky", "mode": "c"}})
    with pytest.raises(SystemExit) as stop:
        with one_line_errors("nextok-x"):
            instantiate(cfg.module)
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "nextok-x: error: module: module.mode must be one of ('a', 'b'), got 'c'\n"
    )
