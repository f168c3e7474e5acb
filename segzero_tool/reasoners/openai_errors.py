"""The typed errors of the OpenAI-compatible reasoner client (:mod:`.openai_compat`).

Every failure of a remote request is a :class:`ReasonerServiceError` (exit code 8) that says what to
do; bad client settings are a :class:`ReasonerConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import BackendError, UnknownModelError


class ReasonerServiceError(BackendError):
    """The reasoner server could not give an answer (base class of the remote-backend errors).

    Attributes:
        url: the base URL concerned (``None`` when several were).
        status: the last HTTP status, if any.
        attempts: how many times the request was sent.
    """

    exit_code = 8

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.attempts = attempts


class ReasonerConnectionError(ReasonerServiceError):
    """No connection to the server, or the connection dropped (after all retries)."""


class ReasonerTimeoutError(ReasonerServiceError):
    """The server did not answer within the timeout (after all retries)."""


class ReasonerHTTPError(ReasonerServiceError):
    """The server answered with an error status (a 4xx, or 429 / 5xx after all retries)."""


class ReasonerAuthError(ReasonerHTTPError):
    """401 / 403: the API key is missing or wrong."""


class ReasonerResponseError(ReasonerServiceError):
    """The server answered 200 with a body that is not a chat completion."""


class ReasonerConfigError(BackendError, ValueError):
    """Bad client settings (base URL, structured-output mode, image format, limits)."""


class UnknownServedModelError(ReasonerServiceError, UnknownModelError):
    """The server does not serve the requested model name. ``served`` lists what it serves."""

    exit_code = 4

    def __init__(self, message: str, *, served: Sequence[str] = (), url: str | None = None) -> None:
        ReasonerServiceError.__init__(self, message, url=url, status=404)
        self.served = list(served)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    @classmethod
    def for_model(cls, candidates: Sequence[str], served: list[str], url: str) -> UnknownServedModelError:
        """The error for a model asked for under ``candidates`` (first: the name given) that ``url`` does
        not serve; the message lists what it serves and how to start the model."""
        tried = " (also tried " + ", ".join(repr(c) for c in candidates[1:]) + ")" if len(candidates) > 1 else ""
        listing = ", ".join(served) if served else "nothing"
        return cls(
            f"model {candidates[0]!r} is not served at {url}{tried}; the server serves: {listing}. "
            f"Pass one of those as the model name (--reasoner-model-name / model_name=), or start the model with "
            f"`segzero serve-reasoner --model {candidates[0]}`", served=served, url=url)


__all__ = [
    "ReasonerAuthError",
    "ReasonerConfigError",
    "ReasonerConnectionError",
    "ReasonerHTTPError",
    "ReasonerResponseError",
    "ReasonerServiceError",
    "ReasonerTimeoutError",
    "UnknownServedModelError",
]
