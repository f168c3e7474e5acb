"""Typed errors. Every message says what went wrong and what the caller can do.

Adapters map these to their own error channels (CLI exit codes, MCP ``is_error``
results, LangChain ``ToolException``); anything else is a bug and propagates.
"""

from __future__ import annotations


class SegZeroError(Exception):
    """Base class of every error this package raises on purpose."""

    #: Exit code used by the ``segzero`` command line for this error class.
    exit_code: int = 1


class ImageLoadError(SegZeroError, ValueError):
    """The image could not be read: missing, undecodable, truncated, empty or too large."""

    exit_code = 3


class ImageTooLargeError(ImageLoadError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class VideoLoadError(ImageLoadError):
    """The video could not be read: missing, not a video, corrupt, no decodable frame, or a codec this PyAV
    build cannot decode."""


class QueryError(SegZeroError, ValueError):
    """The query text is empty or too long."""

    exit_code = 2


class UnknownModelError(SegZeroError, KeyError):
    """A model or preset name is neither in the registry nor a local folder / hub id."""

    exit_code = 4

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class BackendError(SegZeroError):
    """A backend could not be resolved or loaded (unknown name, bad import path, missing extra)."""

    exit_code = 5


class MissingDependencyError(BackendError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class DeviceError(SegZeroError, ValueError):
    """The requested device is not available (e.g. ``cuda`` on a machine without a GPU)."""

    exit_code = 6


class ModelLoadError(SegZeroError):
    """Weights or processor files could not be loaded from the hub id or folder."""

    exit_code = 7


class ImageSourceRejected(SegZeroError, ValueError):
    """An image source was refused by the intake policy (:mod:`segzero_tool.sources`): a path outside
    the allowed folders, URLs switched off, a non-public address, bad base64, over a size limit, a
    value of the wrong type, ... The message says what was wrong and what to do instead."""

    exit_code = 2


class HubUnreachableError(ModelLoadError):
    """A model must come from the Hugging Face Hub, the hub cannot be reached (or ``HF_HUB_OFFLINE`` is
    set) and the files are not in the local cache. Raised after a short probe, before any download.

    ``hints`` holds what to do instead, one sentence each; ``str()`` is the message and the hints on
    one line, for channels that show one line.
    """

    def __init__(self, message: str, *, model_id: str, offline: bool = False) -> None:
        self.message = message
        self.model_id = model_id
        #: True when ``HF_HUB_OFFLINE`` forbade the download (rather than the hub not answering).
        self.offline = offline
        hints = [f"Use a local copy: download it where the hub is reachable (`hf download {model_id} "
                 "--local-dir DIR`) and pass the folder instead of the hub id."]
        if not offline:
            hints.append("Or copy a filled Hugging Face cache here and set HF_HUB_OFFLINE=1 (HF_HOME or "
                         "HF_HUB_CACHE pointing at it).")
        self.hints: tuple[str, ...] = tuple(hints)
        super().__init__(" ".join((message + ".", *self.hints)))

    def __reduce__(self):  # type: ignore[no-untyped-def]  # keyword-only arguments: picklable across processes
        return _rebuild, (type(self), (self.message,), {"model_id": self.model_id, "offline": self.offline})


class GatedModelError(ModelLoadError):
    """The model's hub repository is gated (e.g. ``facebook/sam3``) and this machine has no access to it:
    not logged in, a token without access, or the files must come from the hub and it cannot be reached.
    ``str()`` is one line saying where to request access and how to log in (``hf auth login`` or
    ``HF_TOKEN``). Same exit code as :class:`ModelLoadError` (7).
    """

    def __init__(self, message: str, *, model_id: str) -> None:
        self.model_id = model_id
        #: The page where access is requested.
        self.access_url = f"https://huggingface.co/{model_id}"
        super().__init__(message)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return _rebuild, (type(self), self.args, {"model_id": self.model_id})


def _rebuild(cls: type, args: tuple, kwargs: dict) -> Exception:
    """Unpickle an error whose constructor takes keyword-only arguments (raised in a worker process, e.g. a Ray
    actor, and re-raised where the job runs)."""
    return cls(*args, **kwargs)


class PromptError(SegZeroError, ValueError):
    """Bad input to a steering call (:mod:`segzero_tool.steer`): prompt objects (a box or point that is
    not numbers, lies wholly outside the image, a negative point with no positive prompt, too many
    objects, ...), an object index out of range, a result without its image. The message names the
    object and the field, says what was wrong and what to send instead."""

    exit_code = 2


class NoReasonerError(SegZeroError, ValueError):
    """Reasoning was asked of a pipeline loaded without a reasoner (``reasoner="none"``); such a pipeline
    segments from prompts (``segment_by_prompts``) only."""

    exit_code = 2


class ResultHandleError(SegZeroError, KeyError):
    """A result id (:mod:`segzero_tool.handles`) cannot be resolved; the message says what to send instead."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ResultUnknown(ResultHandleError):
    """The id was never issued by this store (or is not an id at all)."""


class ResultExpired(ResultHandleError):
    """The id was issued but its result outlived the store's lifetime or was evicted by newer results."""


class RefinementNotSupported(SegZeroError):
    """A segmenter backend was given negative points or a previous mask (``mask_input``) and cannot
    honour them. Backends refuse rather than silently ignore such prompts; the transformers SAM2
    backend (``transformers``, the default) and Meta's (``sam2``) support them."""

    exit_code = 5  # the backend lacks the feature: choose another backend
