"""What the API checks in a request body, and how it refuses: OpenAI-style errors naming the
field, and the facts about the served model that requests are checked against."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse

from nextok.generation import SamplingParams
from nextok.serving.worker import EngineWorker

DEFAULT_MAX_TOKENS = 16
# accepted only at their neutral value (the engine has no such rule)
NEUTRAL = {
    "best_of": (None, 1),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "suffix": (None, ""),
    "logprobs_chat": (None, False),
}
COMMON = {"model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty"}
COMMON |= {"stop", "seed", "n", "stream", "user", "stream_options"} | set(NEUTRAL)
COMPLETION_KEYS = COMMON | {"prompt", "logprobs", "echo"}
CHAT_KEYS = COMMON | {"messages", "max_completion_tokens", "logprobs", "top_logprobs"}


class ApiError(Exception):
    """A request the server refuses: ``status`` and an OpenAI-style error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code=None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        if self.status == 401:
            kind = "authentication_error"
        body = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status)


@dataclass
class Served:
    """The model behind the API: its worker, tokenizer and the facts requests are checked against."""

    worker: EngineWorker
    tokenizer: Any
    name: str
    block_size: int
    vocab_limit: int
    eos: str | None = None
    bos: str | None = None
    chat_template: str | None = None
    api_key: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))


# ---------------------------------------------------------------------------- field checks
def int_field(body: dict, key: str, default, lo: int, hi: int | None = None):
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi and value > hi):
        span = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ApiError(400, f"'{key}' must be an integer {span}, got {value!r}", key)
    return value


def bool_field(body: dict, key: str) -> bool:
    """A true/false field (absent or null: false); a string such as "false" is refused, never
    read as true."""
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"'{key}' must be true or false, got {value!r}", key)
    return value


def number_field(body: dict, key: str):
    value = body.get(key)
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise ApiError(400, f"'{key}' must be a number, got {value!r}", key)
    return value


def check_keys(body: dict, allowed: set[str]) -> None:
    for key, value in body.items():
        if key not in allowed:
            raise ApiError(400, f"unsupported parameter '{key}'", key)
        if key in NEUTRAL and value not in NEUTRAL[key]:
            raise ApiError(400, f"'{key}' is not supported by this server (got {value!r})", key)


def sampling_params(body: dict) -> SamplingParams:
    temperature = number_field(body, "temperature")
    top_k = int_field(body, "top_k", None, 0)
    try:
        return SamplingParams(
            temperature=1.0 if temperature is None else float(temperature),
            top_k=top_k or None,
            top_p=number_field(body, "top_p"),
            min_p=number_field(body, "min_p"),
            repetition_penalty=number_field(body, "repetition_penalty") or 1.0,
        )
    except ValueError as err:
        param = str(err).split(" ", 1)[0]
        raise ApiError(400, str(err), param if param in body else None) from None


def stop_strings(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > 4:
        raise ApiError(400, "'stop' must be a string or a list of up to 4 strings", "stop")
    return [s for s in stops if s]
