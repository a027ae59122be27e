"""The README's serving examples (the ``openai`` client and ``curl``), run as written against a
real server; only the port is changed to a free one."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers.server import ThreadServer
from nextok.generation import SamplingParams, generate_text

README = Path(__file__).resolve().parents[2] / "README.md"


def snippet(marker: str) -> str:
    text = README.read_text()
    found = re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)```", text, re.S)
    assert found, f"README has no block after <!-- {marker} -->"
    return found.group(1)


@pytest.fixture(scope="module")
def server(tokenizer):
    from helpers.generation import tiny_model

    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    with ThreadServer(model, tokenizer, name="last.ckpt") as s:
        yield s, model


def test_readme_openai_example(server, tokenizer):
    s, model = server
    code = snippet("serve-python").replace("127.0.0.1:8000", f"127.0.0.1:{s.port}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README serve-python", "exec"), {})
    want = generate_text(model, tokenizer, ["def fib(n):"], 32, SamplingParams(temperature=0))[0]
    assert out.getvalue().startswith(want + "\n")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_example(server, tokenizer):
    s, model = server
    cmd = snippet("serve-curl").replace("127.0.0.1:8000", f"127.0.0.1:{s.port}")
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    want = generate_text(model, tokenizer, ["def fib(n):"], 32, SamplingParams(temperature=0))[0]
    assert body["choices"][0]["text"] == want and body["model"] == "last.ckpt"
