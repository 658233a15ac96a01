"""The OpenAI wire format the server speaks: request bodies (pydantic), response objects, error bodies.

Fields follow the OpenAI API reference for /v1/completions and /v1/chat/completions; `top_k` is an
extension (as in vLLM). Fields the engine cannot honour (n > 1, logprobs, echo, best_of > 1, penalties)
are refused with a 400 rather than silently ignored. Errors are {"error": {"message", "type", "param",
"code"}}, as OpenAI sends them.
"""

from __future__ import annotations

import time
import uuid

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from minimodels.serving.sampling import ParameterError


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = None
    temperature: float = 1.0  # OpenAI's default; 0 is greedy
    top_p: float = 1.0
    top_k: int = 0  # extension: 0 or -1 keeps every token
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    logprobs: int | bool | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    user: str | None = None

    def unsupported(self) -> tuple[str, str] | None:
        """(param, message) for a field whose value the engine cannot honour."""
        if self.n != 1:
            return "n", f"n={self.n}: this server returns one choice per prompt (n=1)"
        if self.logprobs not in (None, False, 0):
            return "logprobs", "logprobs are not supported by this server"
        if self.presence_penalty or self.frequency_penalty:
            name = "presence_penalty" if self.presence_penalty else "frequency_penalty"
            return name, f"{name} is not supported by this server (use 0)"
        return None


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = 16  # OpenAI's default for completions
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None

    def unsupported(self) -> tuple[str, str] | None:
        if self.echo:
            return "echo", "echo is not supported by this server"
        if self.best_of not in (None, 1):
            return "best_of", "best_of > 1 is not supported by this server"
        if self.suffix:
            return "suffix", "suffix is not supported by this server"
        return super().unsupported()

    def prompts(self) -> list[str | list[int]]:
        """The prompts of the request (a batch of strings or of token id lists is several prompts)."""
        p = self.prompt
        if isinstance(p, str) or (p and isinstance(p[0], int)):
            return [p]
        if not p:
            raise ParameterError("prompt", "prompt is empty")
        return list(p)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict] | None = None


class ChatCompletionRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None  # the newer name of max_tokens


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def error_response(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status,
                        content={"error": {"message": message, "type": type_, "param": param, "code": code}})


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """A readable message and the parameter name from pydantic / FastAPI validation errors."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return ("We could not parse the JSON body of your request: "
                f"{first.get('ctx', {}).get('error', 'invalid JSON')}. The body must be a JSON object."), None
    parts, param = [], None
    for e in errors[:5]:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        name = ".".join(loc) or "body"
        param = param or (loc[0] if loc else None)
        parts.append(f"{name}: {e.get('msg', 'invalid value')}")
    return "Invalid request: " + "; ".join(parts), param
