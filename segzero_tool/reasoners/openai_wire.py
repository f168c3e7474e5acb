"""What the OpenAI-compatible reasoner client sends and reads: URLs, the request body, the answer.

One request per query, ``POST {base}/chat/completions``, in the multimodal shape vLLM documents
(checked against vLLM's ``ChatCompletionRequest`` on main, 2026, vLLM >= 0.12)::

    {"model": "visionreasoner-7b",
     "messages": [{"role": "user", "content": [
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},   # the 840x840 frame
         {"type": "text", "text": PROMPT}]}],                                        # no system message
     "temperature": 0, "max_tokens": 2048,
     "structured_outputs": {"regex": "<think>[^<]*</think>..."}}                    # optional (vLLM only)

as the reference scripts build the chat turn (one user turn ``[image, text]``; the chat template's
default system prompt applies). ``structured_outputs`` is vLLM's field since 0.12 (``guided_regex``
and ``guided_grammar`` were removed then); OpenAI's own API rejects it, so it is only sent where the
server is vLLM (``structured_outputs="auto"``, the default: ``/v1/models`` lists the model with
``owned_by: "vllm"``) or where asked for (``"regex"`` / ``"grammar"``).

Nothing here does I/O; PIL is only used when :func:`encode_image` is called with an image.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from .base import ReasonerOutput, ReasonerRequest
from .openai_errors import ReasonerConfigError, ReasonerResponseError
from .structured import AnswerSchema, StructuredKind, schema_for_prompt, structured_outputs_field

if TYPE_CHECKING:
    import httpx
    from PIL import Image

# Sources (read 2026-11, vLLM main): vllm/entrypoints/openai/chat_completion/protocol.py @002032e
# (ChatCompletionRequest: max_tokens / max_completion_tokens, structured_outputs, response_format);
# vllm/sampling_params.py @00388f6 (StructuredOutputsParams: json, regex, choice, grammar, json_object,
# structural_tag; exactly one); docs/features/structured_outputs.md (guided_* removed in v0.12.0);
# vllm/entrypoints/openai/models/serving.py (404 "The model `x` does not exist.", type NotFoundError,
# param "model"; /v1/models cards with owned_by "vllm"); vllm/entrypoints/serve/utils/error_response.py
# (error body {"error": {"message", "type", "param", "code"}}).

#: ``vllm serve``'s default address.
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
#: Environment variable read for the API key unless told otherwise (the OpenAI SDK's convention).
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"

StructuredMode = Literal["auto", "regex", "grammar", "off"]


def normalize_base_url(url: str) -> str:
    """``http://host:8000`` -> ``http://host:8000/v1``; other paths are kept (minus a trailing ``/``).

    Raises:
        ReasonerConfigError: not an ``http(s)://host`` URL.
    """
    text = str(url).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ReasonerConfigError(
            f"bad reasoner base URL {url!r}: use http(s)://HOST[:PORT][/v1], e.g. {DEFAULT_BASE_URL}"
        )
    path = parts.path.rstrip("/")
    if not path:
        path = "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def split_base_urls(value: str | Sequence[str] | None) -> list[str]:
    """Normalised base URLs from a URL, a comma-separated list of URLs, or a sequence of them."""
    if value is None:
        return [DEFAULT_BASE_URL]
    items = value.split(",") if isinstance(value, str) else [u for v in value for u in str(v).split(",")]
    urls = [normalize_base_url(u) for u in items if u.strip()]
    if not urls:
        raise ReasonerConfigError("no reasoner base URL given; pass e.g. base_url='http://127.0.0.1:8000/v1'")
    return list(dict.fromkeys(urls))


def structured_mode(value: StructuredMode | bool | None) -> StructuredMode:
    """The ``structured_outputs`` setting as a mode (``True``: ``regex``; ``None`` / ``False``: ``off``)."""
    if value is None or value is False:
        return "off"
    if value is True:
        return "regex"
    mode = str(value).strip().lower()
    if mode in ("none", "false", "0", "no"):
        mode = "off"
    if mode not in ("auto", "regex", "grammar", "off"):
        raise ReasonerConfigError(f"structured_outputs must be auto, regex, grammar or off, got {value!r}")
    return mode  # type: ignore[return-value]


def model_aliases(model: str) -> list[str]:
    """Names a server may know ``model`` by: the registry short name first (what ``segzero
    serve-reasoner`` serves under), then the hub id."""
    from ..registry import MODELS

    key = model.strip()
    entry = MODELS.get(key.lower())
    if entry is None:
        entry = next((e for e in MODELS.values() if e.hub_id.lower() == key.lower()), None)
    if entry is None or entry.kind != "reasoner":
        return [key]
    return list(dict.fromkeys([entry.name, entry.hub_id, key]))


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def encode_image(image: Image.Image, image_format: str = "png", *, jpeg_quality: int = 95,
                 png_compress_level: int = 1) -> str:
    """The frame as a ``data:`` URL. PNG is lossless (what the in-process backends see); JPEG is
    ~25x faster to encode and ~5x smaller. ``png_compress_level`` 1 gives the same pixels as 6 at a
    third of the time."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    buf = io.BytesIO()
    if image_format == "jpeg":
        image.save(buf, format="JPEG", quality=jpeg_quality)
        mime = "image/jpeg"
    else:
        image.save(buf, format="PNG", compress_level=png_compress_level)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def chat_request_body(request: ReasonerRequest, image_url: str, *, model: str, max_tokens_field: str,
                      kind: StructuredKind | None, answer_schema: str, max_objects: int | None,
                      extra_body: dict[str, Any]) -> dict[str, Any]:
    """The JSON body for one request (``image_url`` is the frame's ``data:`` URL; ``kind``: the
    structured-output kind, ``None`` for none; ``answer_schema``: ``auto``, ``list``, ``single`` or ``json``)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image_url}},
                {"type": "text", "text": request.prompt},
            ],
        }],
        "temperature": 0,
        max_tokens_field: int(request.max_new_tokens),
    }
    if kind is not None and request.structured:
        schema: AnswerSchema = (schema_for_prompt(request.prompt) if answer_schema == "auto"
                                else answer_schema)  # type: ignore[assignment]
        body["structured_outputs"] = structured_outputs_field(kind, schema, max_objects)
    body.update(extra_body)
    return body


def server_message(resp: httpx.Response) -> str:
    """The error text of a response: OpenAI/vLLM ``{"error": {"message"}}``, ``{"message"}``, or the body."""
    try:
        data = resp.json()
    except ValueError:
        return " ".join(resp.text.split())[:300]
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        for key in ("message", "detail", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])[:500]
    return " ".join(resp.text.split())[:300]


def parse_chat_completion(resp: httpx.Response, url: str, attempts: int, model: str) -> ReasonerOutput:
    """The :class:`ReasonerOutput` of a 200 answer from ``url`` (``model``: the name asked for, if the
    body names none).

    Raises:
        ReasonerResponseError: the body is not a chat completion with a text message.
    """
    snippet = " ".join(resp.text[:200].split())
    try:
        data = resp.json()
    except ValueError:
        raise ReasonerResponseError(f"{url} answered HTTP 200 with a body that is not JSON: {snippet!r}",
                                    url=url, status=200, attempts=attempts) from None
    try:
        choice = data["choices"][0]
        message = choice["message"]
        if not isinstance(message, dict):
            raise TypeError
    except (KeyError, IndexError, TypeError):
        raise ReasonerResponseError(f"{url} answered HTTP 200 without choices[0].message: {snippet!r}",
                                    url=url, status=200, attempts=attempts) from None
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise ReasonerResponseError(f"{url} answered with a non-text message content: {snippet!r}",
                                    url=url, status=200, attempts=attempts)
    reasoning = message.get("reasoning") or message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning and "<think>" not in content:
        # a server-side reasoning parser split the <think> block off; put it back
        content = f"<think>{reasoning}</think>{content}"
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return ReasonerOutput(
        text=content,
        prompt_tokens=int_or_none(usage.get("prompt_tokens")),
        completion_tokens=int_or_none(usage.get("completion_tokens")),
        finish_reason=choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None,
        extra={"replica": url, "attempts": attempts, "model": data.get("model", model)},
    )


__all__ = [
    "DEFAULT_API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "StructuredMode",
    "chat_request_body",
    "encode_image",
    "model_aliases",
    "normalize_base_url",
    "parse_chat_completion",
    "server_message",
    "split_base_urls",
    "structured_mode",
]
