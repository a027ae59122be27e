"""The serving examples (the ``openai`` client and ``curl``, in ``docs/serving.md`` and again in the
README), run as written against a real server; only the port is changed to a free one."""

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

ROOT = Path(__file__).resolve().parents[2]
DOCS = pytest.mark.parametrize("doc", ["docs/serving.md", "README.md"])


def snippet(doc: str, marker: str) -> str:
    text = (ROOT / doc).read_text()
    found = re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)```", text, re.S)
    assert found, f"{doc} has no block after <!-- {marker} -->"
    return found.group(1)


@pytest.fixture(scope="module")
def server(tokenizer):
    from helpers.generation import tiny_model

    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    with ThreadServer(model, tokenizer, name="last.ckpt") as s:
        yield s, model


@DOCS
def test_openai_example(server, tokenizer, doc):
    s, model = server
    code = snippet(doc, "serve-python").replace("127.0.0.1:8000", f"127.0.0.1:{s.port}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"{doc} serve-python", "exec"), {})
    want = generate_text(model, tokenizer, ["def fib(n):"], 32, SamplingParams(temperature=0))[0]
    assert out.getvalue().startswith(want + "\n")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@DOCS
def test_curl_example(server, tokenizer, doc):
    s, model = server
    cmd = snippet(doc, "serve-curl").replace("127.0.0.1:8000", f"127.0.0.1:{s.port}")
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    want = generate_text(model, tokenizer, ["def fib(n):"], 32, SamplingParams(temperature=0))[0]
    assert body["choices"][0]["text"] == want and body["model"] == "last.ckpt"
