"""The OpenAI-compatible server, queried by the official ``openai`` client (and raw HTTP for
what a client library would not send) on a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
import torch

from helpers.server import ThreadServer
from nextok.generation import SamplingParams, encode_prompt, generate_text

GREEDY = SamplingParams(temperature=0)


@pytest.fixture(scope="module")
def model(tokenizer):
    from helpers.generation import tiny_model

    return tiny_model(vocab_size=tokenizer.get_vocab_size(), block_size=1024)


@pytest.fixture(scope="module")
def server(model, tokenizer):
    with ThreadServer(model, tokenizer) as s:
        yield s


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def expected(model, tokenizer, prompt, n, **kw):
    return generate_text(model, tokenizer, [prompt], n, GREEDY, **kw)[0]


def test_completion_equals_generate_streamed_or_not(client, model, tokenizer):
    want = [expected(model, tokenizer, p, 12) for p in ("def ", "import")]
    got = client.completions.create(
        model="tiny", prompt=["def ", "import"], max_tokens=12, temperature=0
    )
    assert [c.text for c in got.choices] == want
    assert [c.finish_reason for c in got.choices] == ["length", "length"]
    assert got.usage.completion_tokens == 24
    chunks = list(
        client.completions.create(
            model="tiny", prompt="def ", max_tokens=12, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in chunks) == want[0]
    assert chunks[-1].choices[0].finish_reason == "length"


def test_stop_seed_and_n(client):
    args = dict(model="tiny", prompt="class", max_tokens=20, temperature=1.0, top_k=50, seed=7, n=3)
    a = client.completions.create(
        **{k: v for k, v in args.items() if k != "top_k"}, extra_body={"top_k": 50}
    )
    b = client.completions.create(
        **{k: v for k, v in args.items() if k != "top_k"}, extra_body={"top_k": 50}
    )
    assert [c.text for c in a.choices] == [c.text for c in b.choices]  # reproducible
    assert len({c.text for c in a.choices}) > 1  # choice j draws from seed + j
    stop = a.choices[0].text[3:5]
    c = client.completions.create(
        model="tiny",
        prompt="class",
        max_tokens=20,
        temperature=1.0,
        seed=7,
        extra_body={"top_k": 50},
        stop=[stop],
    )
    assert stop not in c.choices[0].text and c.choices[0].finish_reason == "stop"
    assert a.choices[0].text.startswith(c.choices[0].text)


def test_echo_logprobs_score_the_prompt(client, model, tokenizer):
    ids = encode_prompt(tokenizer, "def add(a, b):")
    got = client.completions.create(
        model="tiny", prompt=ids, max_tokens=1, temperature=0, logprobs=1, echo=True
    )
    lp = got.choices[0].logprobs
    assert len(lp.token_logprobs) == len(ids) + 1 and lp.token_logprobs[0] is None
    with torch.no_grad():
        logp = model(torch.tensor([ids]))[0][0].float().log_softmax(-1)
    want = [logp[i, t].item() for i, t in enumerate(ids[1:])]
    assert lp.token_logprobs[1 : len(ids)] == pytest.approx(want, abs=1e-4)
    assert got.choices[0].text.startswith("def add(a, b):")


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    "body,status,param",
    [
        (dict(model="nope", prompt="x"), 404, "model"),
        (dict(model="tiny", prompt="x", max_tokens=-1), 400, "max_tokens"),
        (dict(model="tiny", prompt="x " * 1500, max_tokens=4), 400, "prompt"),
        (dict(model="tiny", prompt="x", max_tokens=1024), 400, "max_tokens"),
        (dict(model="tiny", prompt="x", presence_penalty=0.5), 400, "presence_penalty"),
        (dict(model="tiny", prompt="x", frobnicate=1), 400, "frobnicate"),
        (dict(model="tiny", prompt="x", temperature=-1), 400, "temperature"),
        (dict(model="tiny", prompt=[[1, 99999]]), 400, "prompt"),
        (dict(model="tiny", prompt="x", stream="false"), 400, "stream"),  # never read as true
        (dict(model="tiny", prompt="x", echo=1), 400, "echo"),
        (dict(model="tiny", messages=[{"role": "user", "content": "hi"}]), 400, "messages"),
    ],
)
def test_bad_requests_name_the_field(server, body, status, param):
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    r = httpx.post(server.url + path, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"] and err["type"] == "invalid_request_error"


def test_malformed_json_is_a_400_and_the_server_lives_on(server, client):
    r = httpx.post(
        server.url + "/v1/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other", prompt="x")
    assert client.completions.create(model="tiny", prompt="x", max_tokens=2).choices


@pytest.mark.timeout(60)
def test_disconnect_mid_stream_frees_the_sequence(server, client):
    engine = server.engine
    before = engine.cancellations
    body = dict(model="tiny", prompt="def ", max_tokens=1000, temperature=0, stream=True)
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break  # one chunk, then hang up
    deadline = time.monotonic() + 20
    while engine.has_work or engine.cancellations == before:
        assert time.monotonic() < deadline, "the sequence was not cancelled"
        time.sleep(0.02)
    assert engine.cache.allocator.num_used == 0
    # the engine thread lives on after a sequence its client dropped
    assert client.completions.create(model="tiny", prompt="x", max_tokens=2).choices


def test_bearer_auth(server, client):
    server.served.api_key = "s3cret"
    try:
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
        ok = openai.OpenAI(base_url=server.url + "/v1", api_key="s3cret", max_retries=0)
        assert ok.completions.create(model="tiny", prompt="x", max_tokens=2).choices
        assert httpx.get(server.url + "/health").status_code == 200  # probes need no key
    finally:
        server.served.api_key = None


def test_chat_with_a_template(server, client, model, tokenizer):
    server.served.chat_template = (
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    try:
        msgs = [{"role": "user", "content": "def add"}]
        want = expected(model, tokenizer, "user: def add\nassistant:", 10)
        got = client.chat.completions.create(
            model="tiny", messages=msgs, max_tokens=10, temperature=0
        )
        assert got.choices[0].message.content == want
        parts = client.chat.completions.create(
            model="tiny", messages=msgs, max_tokens=10, temperature=0, stream=True
        )
        assert "".join(p.choices[0].delta.content or "" for p in parts) == want
    finally:
        server.served.chat_template = None


def test_sse_wire_format(server):
    body = dict(model="tiny", prompt="x", max_tokens=3, temperature=0, stream=True)
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    assert all(json.loads(ln[6:])["object"] == "text_completion" for ln in lines[:-1])
