"""The OpenAI-compatible HTTP API (FastAPI): ``/v1/completions``, ``/v1/chat/completions``,
``/v1/models`` and ``/health``, over an :class:`~nextok.serving.worker.EngineWorker`.

Every bad request gets a 4xx with an OpenAI-style body ``{"error": {"message", "type", "param",
"code"}}`` naming the field; parameters the engine cannot honour are refused, not ignored.
A client that disconnects has its sequences cancelled (their KV blocks freed).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, StreamingResponse

from nextok.generation import encode_prompt
from nextok.serving.api_checks import (
    CHAT_KEYS,
    COMPLETION_KEYS,
    DEFAULT_MAX_TOKENS,
    ApiError,
    Served,
    bool_field,
    check_keys,
    int_field,
    sampling_params,
    stop_strings,
)
from nextok.serving.engine import Output, Request


# ---------------------------------------------------------------------------- the app
def build_app(served: Served) -> FastAPI:
    app = FastAPI(title="nextok-serve", docs_url=None, redoc_url=None)
    tok = served.tokenizer

    @app.exception_handler(ApiError)
    async def _api_error(_request, err: ApiError):
        return err.response()

    @app.exception_handler(Exception)
    async def _server_error(_request, err: Exception):  # never a bare 500 page
        return ApiError(500, f"internal error: {type(err).__name__}: {err}").response()

    def authorize(http: HttpRequest) -> None:
        if served.api_key is None:
            return
        header = http.headers.get("authorization", "")
        if not secrets.compare_digest(header.encode(), f"Bearer {served.api_key}".encode()):
            raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')")

    async def read_body(http: HttpRequest, allowed: set[str]) -> dict:
        authorize(http)
        try:
            body = json.loads(await http.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ApiError(400, f"the request body is not valid JSON: {err}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        check_keys(body, allowed)
        model = body.get("model")
        if model != served.name:
            raise ApiError(
                404,
                f"the model {model!r} does not exist; this server serves {served.name!r}",
                "model",
                "model_not_found",
            )
        return body

    def encode(prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            return encode_prompt(tok, prompt, eos=served.eos, bos=served.bos)
        if not prompt or not all(
            isinstance(t, int) and 0 <= t < served.vocab_limit for t in prompt
        ):
            raise ApiError(
                400, f"'prompt' token ids must be integers in [0, {served.vocab_limit})", "prompt"
            )
        return list(prompt)

    def requests_for(body: dict, prompts: list, max_tokens: int, **extra) -> list[Request]:
        sampling, stop = sampling_params(body), stop_strings(body)
        seed = int_field(body, "seed", None, 0)
        n = int_field(body, "n", 1, 1, 16)
        out = []
        for p in prompts:
            ids = encode(p)
            if len(ids) >= served.block_size:
                raise ApiError(
                    400,
                    f"the prompt is {len(ids)} tokens; the model's context is "
                    f"{served.block_size} (leave room for max_tokens)",
                    "prompt",
                )
            if len(ids) + max_tokens > served.block_size:
                raise ApiError(
                    400,
                    f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) "
                    f"exceeds the model's context of {served.block_size} tokens; set "
                    f"max_tokens <= {served.block_size - len(ids)}",
                    "max_tokens",
                )
            for j in range(n):  # choice j of a seeded request draws from seed + j
                out.append(
                    Request(
                        ids, max_tokens, sampling, None if seed is None else seed + j, stop, **extra
                    )
                )
        return out

    async def run(
        http: HttpRequest, reqs: list[Request], stream: bool
    ) -> tuple[list[int], asyncio.Queue]:
        queue: asyncio.Queue = asyncio.Queue()
        ids: list[int] = []
        try:
            for r in reqs:
                ids.append(served.worker.submit(r, queue, stream))
        except ValueError as err:
            for i in ids:
                served.worker.cancel(i)
            raise ApiError(400, str(err)) from None
        return ids, queue

    async def outputs(http, ids, queue, poll: bool) -> AsyncIterator[Output]:
        """The outputs of ``ids`` as they come; cancels what is left if the client goes away
        (``poll``: watch for that here; a streamed response is cancelled by Starlette)."""
        left = set(ids)
        watcher = asyncio.create_task(_watch_disconnect(http, queue)) if poll else None
        try:
            while left:
                item = await queue.get()
                if item is _GONE:
                    return
                if isinstance(item, BaseException):
                    raise ApiError(500, f"internal error: {type(item).__name__}: {item}")
                if item.finished:
                    left.discard(item.seq_id)
                yield item
        finally:
            if watcher is not None:
                watcher.cancel()
            for i in left:
                served.worker.cancel(i)

    def piece(t: int) -> str:
        return tok.decode([t])

    def logprobs_json(tokens, lps, tops, offset0: int) -> dict:
        texts = [piece(t) for t in tokens]
        offsets, at = [], offset0
        for s in texts:
            offsets.append(at)
            at += len(s)
        return {
            "tokens": texts,
            "token_logprobs": lps,
            "top_logprobs": [
                None if t is None else {piece(k): v for k, v in t.items()} for t in tops
            ],
            "text_offset": offsets,
        }

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(http: HttpRequest):
        authorize(http)
        card = {
            "id": served.name,
            "object": "model",
            "created": served.created,
            "owned_by": "nextok",
            "max_model_len": served.block_size,
        }
        return {"object": "list", "data": [card]}

    @app.post("/v1/completions")
    async def completions(http: HttpRequest):
        body = await read_body(http, COMPLETION_KEYS)
        prompt = body.get("prompt")
        if isinstance(prompt, str) or (
            isinstance(prompt, list) and prompt and isinstance(prompt[0], int)
        ):
            prompts = [prompt]
        elif (
            isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt)
        ):
            prompts = prompt
        else:
            raise ApiError(
                400,
                "'prompt' must be a string, a list of strings, a list of token "
                "ids or a list of lists of token ids",
                "prompt",
            )
        max_tokens = int_field(body, "max_tokens", DEFAULT_MAX_TOKENS, 0)
        logprobs = int_field(body, "logprobs", None, 0, 20)
        echo = bool_field(body, "echo")
        stream = bool_field(body, "stream")
        if max_tokens == 0 and not echo:
            raise ApiError(400, "'max_tokens' may be 0 only with echo (scoring)", "max_tokens")
        reqs = requests_for(
            body,
            prompts,
            max_tokens,
            logprobs=logprobs,
            echo_logprobs=echo and logprobs is not None,
        )
        n = len(reqs) // len(prompts)
        ids, queue = await run(http, reqs, stream)
        index = {sid: i for i, sid in enumerate(ids)}
        rid, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())
        head = (
            [
                tok.decode(r.prompt) if not isinstance(p, str) else p
                for r, p in zip(reqs, [p for p in prompts for _ in range(n)])
            ]
            if echo
            else None
        )

        def chunk_logprobs(o: Output, offset: int):
            toks, lps, tops = [], [], []
            if o.prompt_logprobs is not None:
                toks += list(reqs[index[o.seq_id]].prompt)
                lps += [lp for lp, _ in o.prompt_logprobs]
                tops += [None] + [t for _, t in o.prompt_logprobs[1:]]
            if o.logprob is not None:
                toks.append(o.token if o.token is not None else served_eos_id())
                lps.append(o.logprob)
                tops.append(o.top_logprobs)
            return logprobs_json(toks, lps, tops, offset) if toks else None

        def served_eos_id():
            return tok.token_to_id(served.eos) if served.eos else 0

        if stream:

            async def events():
                started = set()
                async for o in outputs(http, ids, queue, poll=False):
                    i = index[o.seq_id]
                    text = o.text
                    if echo and i not in started:
                        text = head[i] + text
                    started.add(i)
                    lp = chunk_logprobs(o, 0) if logprobs is not None else None
                    if not text and lp is None and not o.finished:
                        continue
                    choice = {"index": i, "text": text, "logprobs": lp, "finish_reason": _reason(o)}
                    yield _sse(
                        {
                            "id": rid,
                            "object": "text_completion",
                            "created": created,
                            "model": served.name,
                            "choices": [choice],
                        }
                    )
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        texts = ["" for _ in ids]
        counts = [0 for _ in ids]
        reasons: list[str | None] = [None for _ in ids]
        lp_parts: list[list[dict]] = [[] for _ in ids]
        async for o in outputs(http, ids, queue, poll=True):
            i = index[o.seq_id]
            texts[i] += o.text
            counts[i] += o.token is not None
            reasons[i] = _reason(o) or reasons[i]
            if logprobs is not None:
                lp = chunk_logprobs(o, 0)
                if lp:
                    lp_parts[i].append(lp)
        if any(r is None for r in reasons):
            return JSONResponse({}, status_code=499)  # the client is gone
        choices = []
        for i in range(len(ids)):
            prefix = head[i] if echo else ""
            choices.append(
                {
                    "index": i,
                    "text": prefix + texts[i],
                    "logprobs": _merge_logprobs(lp_parts[i]) if logprobs is not None else None,
                    "finish_reason": reasons[i],
                }
            )
        n_prompt = sum(len(reqs[i].prompt) for i in range(0, len(reqs), n))
        usage = {
            "prompt_tokens": n_prompt,
            "completion_tokens": sum(counts),
            "total_tokens": n_prompt + sum(counts),
        }
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": served.name,
            "choices": choices,
            "usage": usage,
        }

    @app.post("/v1/chat/completions")
    async def chat(http: HttpRequest):
        body = await read_body(http, CHAT_KEYS)
        if body.get("logprobs") or body.get("top_logprobs"):
            raise ApiError(
                400,
                "'logprobs' is not supported on chat completions; use /v1/completions",
                "logprobs",
            )
        if served.chat_template is None:
            raise ApiError(
                400,
                f"the model {served.name!r} has no chat template; use "
                "/v1/completions (or start the server with chat_template=FILE)",
                "messages",
            )
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(
                isinstance(m, dict)
                and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)
                for m in messages
            )
        ):
            raise ApiError(
                400,
                "'messages' must be a non-empty list of {role, content} objects "
                "with string content",
                "messages",
            )
        prompt = render_chat(served, messages)
        key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        max_tokens = int_field(body, key, None, 1)
        if max_tokens is None:
            n_prompt = len(encode(prompt))
            max_tokens = max(1, served.block_size - n_prompt)
        stream = bool_field(body, "stream")
        reqs = requests_for(body, [prompt], max_tokens)
        ids, queue = await run(http, reqs, stream)
        index = {sid: i for i, sid in enumerate(ids)}
        rid, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())

        if stream:

            async def events():
                started = set()
                async for o in outputs(http, ids, queue, poll=False):
                    i = index[o.seq_id]
                    delta = {} if i in started else {"role": "assistant"}
                    started.add(i)
                    if o.text:
                        delta["content"] = o.text
                    if not delta and not o.finished:
                        continue
                    choice = {"index": i, "delta": delta, "finish_reason": _reason(o)}
                    yield _sse(
                        {
                            "id": rid,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": served.name,
                            "choices": [choice],
                        }
                    )
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        texts = ["" for _ in ids]
        counts = [0 for _ in ids]
        reasons: list[str | None] = [None for _ in ids]
        async for o in outputs(http, ids, queue, poll=True):
            i = index[o.seq_id]
            texts[i] += o.text
            counts[i] += o.token is not None
            reasons[i] = _reason(o) or reasons[i]
        if any(r is None for r in reasons):
            return JSONResponse({}, status_code=499)
        n_prompt = len(reqs[0].prompt)
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": t},
                "finish_reason": reasons[i],
            }
            for i, t in enumerate(texts)
        ]
        usage = {
            "prompt_tokens": n_prompt,
            "completion_tokens": sum(counts),
            "total_tokens": n_prompt + sum(counts),
        }
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": served.name,
            "choices": choices,
            "usage": usage,
        }

    return app


def render_chat(served: Served, messages: list[dict]) -> str:
    """The chat prompt from the model's Jinja chat template (sandboxed, as transformers does)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    try:
        return env.from_string(served.chat_template).render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=served.bos or "",
            eos_token=served.eos or "",
        )
    except Exception as err:  # a template error is the request's (or the template's) problem
        raise ApiError(
            400, f"the chat template failed on these messages: {err}", "messages"
        ) from None


_GONE = object()  # put on a request's queue when its client disconnects


async def _watch_disconnect(http: HttpRequest, queue: asyncio.Queue) -> None:
    while not await http.is_disconnected():
        await asyncio.sleep(0.5)
    queue.put_nowait(_GONE)


def _reason(o: Output) -> str | None:
    return None if o.finish_reason in (None, "cancelled") else o.finish_reason


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def _merge_logprobs(parts: list[dict]) -> dict:
    merged: dict[str, list] = {
        "tokens": [],
        "token_logprobs": [],
        "top_logprobs": [],
        "text_offset": [],
    }
    at = 0
    for part in parts:
        for key in ("tokens", "token_logprobs", "top_logprobs"):
            merged[key] += part[key]
        for s in part["tokens"]:
            merged["text_offset"].append(at)
            at += len(s)
    return merged
