"""Request bodies the simulator accepts, checked as SGLang 0.5.23 checks them, and the errors it
answers when they are malformed.

SGLang's FastAPI app (``srt/entrypoints/http_server.py``) validates each body against a
pydantic model (``ChatCompletionRequest``, ``CompletionRequest`` in ``openai/protocol.py``,
the ``GenerateReqInput`` dataclass) and turns every failure into HTTP 400:

* a validation error (a wrong type, invalid JSON) goes through its ``RequestValidationError``
  handler: ``{"object": "error", "message": "N validation errors: ...", "type": "Bad Request",
  "param": null, "code": 400}``;
* a body FastAPI cannot even parse (not UTF-8, nested past the parser's recursion limit) is
  FastAPI's ``HTTPException(400, "There was an error parsing the body")``, through SGLang's
  ``HTTPException`` handler: the same shape with ``"type": "400"``;
* a request uvicorn cannot frame (a ``Content-Length`` that is no number) is uvicorn's plain-text
  400 ``Invalid HTTP request received.``, and the connection is closed.

The simulator adds one limit SGLang leaves to its proxy: a body over `MAX_BODY_BYTES` is
answered 413 in the ``HTTPException`` shape and never read.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from infraplan.diagnostics import SHOWN_CHARS

#: the largest request body the simulator reads (larger ones are answered 413 unread)
MAX_BODY_BYTES = 64 * 1024 * 1024
#: uvicorn's answer to a request it cannot frame
UNFRAMED = "Invalid HTTP request received."
#: FastAPI's answer to a body it cannot decode (http 400 through SGLang's HTTPException handler)
UNPARSABLE = "There was an error parsing the body"


class Rejected(Exception):
    """A request answered with an error before any route runs it."""

    def __init__(self, status: int, body: dict[str, Any] | str, *, close: bool = False):
        super().__init__(body if isinstance(body, str) else body["message"])
        self.status = status
        self.body = body
        self.close = close  # the connection cannot be reused (its framing is lost)


def http_error(status: int, message: str, *, close: bool = False) -> Rejected:
    """SGLang's `HTTPException` handler: ``type`` is the status code as a string."""
    return Rejected(status, {"object": "error", "message": message, "type": str(status), "param": None,
                             "code": status}, close=close)


def validation_error(errors: list[dict[str, Any]]) -> Rejected:
    """SGLang's `RequestValidationError` handler (400 ``Bad Request``), FastAPI's message format."""
    shown = [{"type": e["type"], "loc": ("body", *e.get("loc", ())), "msg": e["msg"],
              "input": _shown_input(e.get("input"))} for e in errors]
    n = len(shown)
    text = f"{n} validation error{'s' if n != 1 else ''}:\n" + "".join(f"  {e}\n" for e in shown)
    return Rejected(400, {"object": "error", "message": f"{text} {shown}", "type": HTTPStatus.BAD_REQUEST.phrase,
                          "param": None, "code": 400})


def _shown_input(value: Any) -> Any:
    """The offending input as FastAPI shows it, cut when long (a 10 MB prompt is not echoed back)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<deeply nested {type(value).__name__}>"
    return value if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"


def parse_json(raw: bytes) -> Any:
    """A request body as JSON (an empty body is ``{}``), or `Rejected` as FastAPI answers it."""
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise validation_error([{"type": "json_invalid", "loc": (exc.pos,), "msg": "JSON decode error",
                                 "input": {}}]) from None
    except (UnicodeDecodeError, RecursionError, ValueError):
        raise http_error(400, UNPARSABLE) from None


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")  # SGLang's requests have many more fields


class StreamOptions(_Body):
    include_usage: bool | None = False


class ContentPart(_Body):
    type: str
    text: str | None = None


class ChatMessage(_Body):
    role: str
    content: str | list[ContentPart] | None = None


class _OpenAIRequest(_Body):
    model: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None


class ChatCompletionRequest(_OpenAIRequest):
    """The fields of SGLang's ``ChatCompletionRequest`` the simulator reads."""

    messages: list[ChatMessage]


class CompletionRequest(_OpenAIRequest):
    """The fields of SGLang's ``CompletionRequest`` the simulator reads."""

    prompt: list[int] | list[list[int]] | str | list[str]


class GenerateRequest(_Body):
    """The fields of SGLang's ``GenerateReqInput`` the simulator reads."""

    text: list[str] | str | None = None
    input_ids: list[list[int]] | list[int] | None = None
    sampling_params: list[dict[str, Any]] | dict[str, Any] | None = None
    stream: bool = False
    rid: list[str] | str | None = None


def checked(model: type[_Body], body: Any) -> dict[str, Any]:
    """`body` validated by `model`, as a dict with its values as validated; `Rejected` if invalid."""
    try:
        return model.model_validate(body).model_dump()
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None
