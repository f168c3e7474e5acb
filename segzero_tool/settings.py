"""One settings object for the pipeline, fed by (in rising priority) defaults, a config file,
``SEGZERO_*`` environment variables and explicit arguments (command-line flags).

Config files are TOML or JSON with the field names below, at the top level or under a
``[segzero]`` table::

    reasoner = "visionreasoner-7b"
    segmenter = "sam2.1-hiera-large"
    device = "cuda"
    reasoner_backend = "transformers"     # or "openai", "vllm", "my_pkg.mod:MyReasoner"
    reasoner_base_url = "http://gpu-1:8000/v1,http://gpu-2:8000/v1"   # openai backend: replicas
    verify = true                         # the self-check loop, with another model as the verifier:
    verifier = "Qwen/Qwen2.5-VL-72B-Instruct"
    verifier_backend = "openai"
    verifier_base_url = "http://gpu-3:8000/v1"

Environment variables are the upper-cased names with a ``SEGZERO_`` prefix, e.g.
``SEGZERO_REASONER``, ``SEGZERO_DEVICE``, ``SEGZERO_MAX_OBJECTS``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import SegZeroError


class SettingsError(SegZeroError, ValueError):
    """A configuration file or variable is invalid."""

    exit_code = 2


#: The largest ``verify_rounds`` (:data:`segzero_tool.pipeline.MAX_VERIFY_ROUNDS`; not imported: no numpy here).
_MAX_VERIFY_ROUNDS = 5
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})

#: The verifier's fields: the model first, then its backend and the remote (openai backend) ones.
_VERIFIER_FIELDS = ("verifier", "verifier_backend", "verifier_base_url", "verifier_api_key_env",
                    "verifier_model_name")
_VERIFIER_REMOTE_FIELDS = _VERIFIER_FIELDS[2:]


def _flag(name: str) -> str:
    """A field as its flag and variable: ``--verifier-backend (SEGZERO_VERIFIER_BACKEND)``."""
    return "--" + name.replace("_", "-") + f" ({PipelineSettings.ENV_PREFIX}{name.upper()})"


def _flags(names: list[str]) -> str:
    return ", ".join(_flag(name) for name in names) + (" is" if len(names) == 1 else " are")


#: dtype names the model loaders accept (see :func:`segzero_tool.devices.resolve_dtype`).
_DTYPE_NAMES = frozenset({"auto", "bf16", "bfloat16", "fp16", "float16", "half", "fp32", "float32", "float"})


def _name_in(exc: SettingsError, source: str) -> str:
    """The message of a :meth:`PipelineSettings.problem` with the field named as ``source`` spells it:
    ``--max-objects`` for arguments, ``SEGZERO_MAX_OBJECTS`` for the environment."""
    message = str(exc)
    for f in fields(PipelineSettings):
        if message.startswith(f"{f.name} "):
            if source == "arguments":
                return "--" + f.name.replace("_", "-") + message[len(f.name):]
            if source == "environment":
                return PipelineSettings.ENV_PREFIX + f.name.upper() + message[len(f.name):]
            return message
    return message


@dataclass(frozen=True)
class PipelineSettings:
    """What to load and how; every field has a sane default."""

    preset: str = "default"
    reasoner: str | None = None  # "none": no reasoner, only the segmenter (segment_by_prompts)
    segmenter: str | None = None
    reasoner_backend: str = "transformers"
    segmenter_backend: str = "transformers"
    device: str = "auto"
    dtype: str = "auto"
    prompt_format: str | None = None
    # None: the command's default ("repair" for segment and the MCP server, "reference" for eval)
    compat: str | None = None
    rounding: str | None = None  # None: the prompt format's (segzero for the Seg-Zero format, else half_up)
    # None: the reasoner's (registry entry, else prompt format: relative1000 for qwen3vl, else frame)
    coords: str | None = None
    frame_size: int = 840
    max_objects: int = 50
    max_new_tokens: int | None = None
    max_pixels: int = 100_000_000
    cache_size: int = 8
    # drop a cached image embedding not used for this long (seconds; None: keep it until evicted)
    cache_ttl_s: float | None = None
    # remote reasoners (``reasoner_backend = "openai"``; ``structured_outputs`` also for "vllm")
    reasoner_base_url: str | None = None  # one URL or several, comma-separated (replicas)
    reasoner_api_key_env: str | None = None  # environment variable holding the API key
    reasoner_model_name: str | None = None  # the name the server serves the model under
    structured_outputs: str | None = None  # auto, regex, grammar or off
    image_format: str | None = None  # png or jpeg
    # the self-check loop (segment(..., verify=True)); rounds: 1 to MAX_VERIFY_ROUNDS
    verify: bool = False
    verify_rounds: int = 2
    # the verifier (None: the reasoner itself): registry name, hub id or folder, loaded like the reasoner
    # with its own backend (default transformers); verifier_base_url / _api_key_env / _model_name: as the
    # reasoner_* ones, for verifier_backend "openai" (or a custom class)
    verifier: str | None = None
    verifier_backend: str | None = None
    verifier_base_url: str | None = None
    verifier_api_key_env: str | None = None
    verifier_model_name: str | None = None

    ENV_PREFIX = "SEGZERO_"

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise SettingsError(problem)

    def problem(self) -> str | None:
        """What is wrong with these values (the first thing found), or ``None``.

        Checked without importing torch or loading anything, so that every entry point (flags,
        ``SEGZERO_*`` variables, config files, ``segzero-mcp``) refuses a bad value at once.
        """
        for name, low in (("frame_size", 1), ("max_objects", 1), ("max_new_tokens", 1), ("max_pixels", 1),
                          ("cache_size", 0)):
            value = getattr(self, name)
            if value is not None and value < low:
                return f"{name} must be at least {low}, got {value}"
        ttl = self.cache_ttl_s
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < math.inf):
            return f"cache_ttl_s must be a positive number of seconds, got {ttl!r}"
        if isinstance(self.verify_rounds, bool) or not isinstance(self.verify_rounds, int) or not (
                1 <= self.verify_rounds <= _MAX_VERIFY_ROUNDS):
            return f"verify_rounds must be from 1 to {_MAX_VERIFY_ROUNDS}, got {self.verify_rounds!r}"
        if not isinstance(self.verify, bool):
            return f"verify must be true or false, got {self.verify!r}"
        dtype = str(self.dtype).strip().lower().removeprefix("torch.")
        if dtype not in _DTYPE_NAMES:
            return f"dtype must be auto, bf16, fp16 or fp32, got {self.dtype!r}"
        for name, allowed in (("prompt_format", ("visionreasoner", "segzero", "grounding", "qwen3vl")),
                              ("compat", ("reference", "repair")),
                              ("rounding", ("half_up", "segzero")),
                              ("coords", ("frame", "relative1000")),
                              ("structured_outputs", ("auto", "regex", "grammar", "off")),
                              ("image_format", ("png", "jpeg"))):
            value = getattr(self, name)
            if value is not None and str(value).strip().lower() not in allowed:
                return f"{name} must be one of {', '.join(allowed)}, got {value!r}"
        for name in ("preset", "reasoner_backend", "segmenter_backend", "device"):
            if not str(getattr(self, name)).strip():
                return f"{name} is empty"
        for name in _VERIFIER_FIELDS:
            value = getattr(self, name)
            if value is not None and not str(value).strip():
                return f"{name} is empty" + ("; omit it to use the reasoner as the verifier" if name == "verifier" else "")
        if self.verifier is not None and str(self.verifier).strip().lower() == "none":
            return f"verifier {self.verifier!r} is not a model: omit it to use the reasoner as the verifier"
        return None

    def verifier_problem(self) -> str | None:
        """What is wrong with the verifier settings taken together (the first thing found), or ``None``.

        Not part of :meth:`problem`: the layers (file, environment, flags) are merged one by one, and a
        ``verifier_base_url`` from the config file may meet its ``verifier`` only in the flags. Checked by
        :meth:`resolve` once every layer is in, and by :meth:`verifier_kwargs`.
        """
        stray = [name for name in _VERIFIER_FIELDS[1:] if getattr(self, name) is not None]
        if self.verifier is None:
            if stray:
                return (f"{_flags(stray)} set without --verifier (the model to load as the verifier): add "
                        "--verifier NAME|HUB_ID|FOLDER (SEGZERO_VERIFIER, config key verifier), or drop "
                        f"{'it' if len(stray) == 1 else 'them'} to use the reasoner as the verifier")
            return None
        if self.no_reasoner:
            return ("--verifier checks the reasoner's answers, and --reasoner none loads no reasoner; drop the "
                    "verifier settings or name a reasoner")
        remote = [name for name in _VERIFIER_REMOTE_FIELDS if getattr(self, name) is not None]
        backend = (self.verifier_backend or "transformers").strip().lower()
        if remote and backend != "openai" and ":" not in backend and "." not in backend:
            return (f"{_flags(remote)} only for --verifier-backend openai (or a package.module:Class), not "
                    f"{backend!r}; add --verifier-backend openai")
        return None

    @property
    def no_reasoner(self) -> bool:
        """Whether ``reasoner`` is ``"none"``: :meth:`build_pipeline` loads only the segmenter, and the
        pipeline segments from the caller's prompts (``segment_by_prompts``), not by reasoning."""
        from .registry import is_no_reasoner

        return is_no_reasoner(self.reasoner)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def merged(self, values: Mapping[str, Any], source: str) -> PipelineSettings:
        """Return a copy updated with ``values`` (``None`` values are ignored)."""
        known = {f.name: f for f in fields(self)}
        updates: dict[str, Any] = {}
        for key, value in values.items():
            if value is None:
                continue
            name = key.replace("-", "_").lower()
            if name not in known:
                raise SettingsError(f"{source}: unknown setting {key!r}; known: {', '.join(known)}")
            typ = str(known[name].type)
            if typ.startswith("bool"):
                word = str(value).strip().lower()
                if isinstance(value, bool):
                    pass
                elif word in _TRUE or word in _FALSE:
                    value = word in _TRUE
                else:
                    raise SettingsError(f"{source}: setting {key!r} must be true or false, got {value!r}")
                updates[name] = value
                continue
            try:
                if typ.startswith("int"):
                    value = int(value)
                elif typ.startswith("float"):
                    value = float(value)
                else:
                    value = str(value)
            except (TypeError, ValueError):
                kind = "a number" if typ.startswith("float") else "an integer"
                raise SettingsError(f"{source}: setting {key!r} must be {kind}, got {value!r}") from None
            updates[name] = value
        try:
            return replace(self, **updates)
        except SettingsError as exc:
            named = _name_in(exc, source)
            raise SettingsError(named if source == "arguments" else f"{source}: {named}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, base: PipelineSettings | None = None) -> PipelineSettings:
        env = os.environ if environ is None else environ
        values = {name: env.get(cls.ENV_PREFIX + name.upper()) for name in cls.field_names()}
        return (base or cls()).merged(values, "environment")

    @classmethod
    def from_file(cls, path: str | os.PathLike, base: PipelineSettings | None = None) -> PipelineSettings:
        p = Path(path).expanduser()
        if not p.is_file():
            raise SettingsError(f"config file {p} does not exist")
        try:
            if p.suffix.lower() == ".json":
                data = json.loads(p.read_text(encoding="utf-8"))
            else:
                try:
                    import tomllib
                except ModuleNotFoundError:  # Python 3.10
                    import tomli as tomllib  # type: ignore[no-redef]
                data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise SettingsError(f"config file {p} could not be parsed: {exc}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"config file {p} must hold a table/object of settings")
        if isinstance(data.get("segzero"), dict):
            data = data["segzero"]
        return (base or cls()).merged(data, str(p))

    @classmethod
    def resolve(cls, *, config: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> PipelineSettings:
        """Defaults < config file < environment < overrides."""
        s = cls()
        if config is not None:
            s = cls.from_file(config, s)
        s = cls.from_env(environ, s)
        s = s.merged(overrides or {}, "arguments")
        problem = s.verifier_problem()
        if problem is not None:
            raise SettingsError(problem)
        return s

    def normalised(self, name: str) -> str | None:
        """A choice setting (``compat``, ``rounding``, ...) stripped and lower-cased; ``None`` when unset."""
        value = getattr(self, name)
        return None if value is None else str(value).strip().lower()

    def remote_reasoner_kwargs(self) -> dict[str, Any]:
        """The remote-reasoner settings as backend keyword arguments (empty when none is set).

        Raises:
            SettingsError: such a setting is given for a backend that does not take it.
        """
        given = {
            key: value
            for key, value in (("base_url", self.reasoner_base_url), ("api_key_env", self.reasoner_api_key_env),
                               ("model_name", self.reasoner_model_name),
                               ("structured_outputs", self.structured_outputs), ("image_format", self.image_format))
            if value is not None
        }
        backend = self.reasoner_backend.strip().lower()
        accepted = {"openai": set(given), "vllm": {"structured_outputs"}}.get(backend)
        if accepted is None and (":" in backend or "." in backend):
            accepted = set(given)  # a custom backend class takes what it declares
        wrong = sorted(set(given) - (accepted or set()))
        if wrong:
            names = ", ".join(("reasoner_" + k if not k.startswith(("structured", "image")) else k) for k in wrong)
            raise SettingsError(
                f"{names} only apply to reasoner_backend 'openai' (structured_outputs also to 'vllm'), "
                f"not {self.reasoner_backend!r}; add --reasoner-backend openai"
            )
        return given

    def verifier_kwargs(self) -> dict[str, Any]:
        """The verifier's backend keyword arguments (``base_url``, ``api_key_env``, ``model_name``: only
        those set; empty when none is).

        Raises:
            SettingsError: the verifier settings do not fit together (:meth:`verifier_problem`).
        """
        problem = self.verifier_problem()
        if problem is not None:
            raise SettingsError(problem)
        return {field_name.removeprefix("verifier_"): getattr(self, field_name)
                for field_name in _VERIFIER_REMOTE_FIELDS if getattr(self, field_name) is not None}

    def build_pipeline(self, *, with_verifier: bool = True, **extra: Any) -> Any:
        """Load the models these settings name and return a :class:`SegZeroPipeline`.

        ``verifier`` set: that model is loaded too (after the reasoner, on its device and dtype) as the
        self-check loop's verifier, unless ``with_verifier`` is false (a caller that never verifies).
        """
        from .pipeline import SegZeroPipeline

        kwargs: dict[str, Any] = {
            "preset": self.preset,
            "reasoner_backend": self.reasoner_backend,
            "segmenter_backend": self.segmenter_backend,
            "device": self.device,
            "dtype": self.dtype,
            "prompt_format": self.prompt_format,
            "compat": self.normalised("compat") or "repair",
            "rounding": self.normalised("rounding"),
            "coords": self.normalised("coords"),
            "frame_size": self.frame_size,
            "max_objects": self.max_objects,
            "max_pixels": self.max_pixels,
        }
        if self.max_new_tokens is not None:
            kwargs["max_new_tokens"] = self.max_new_tokens
        if self.segmenter_backend == "transformers":
            kwargs["segmenter_kwargs"] = {"cache_size": self.cache_size, "cache_ttl_s": self.cache_ttl_s}
        remote = self.remote_reasoner_kwargs()
        if remote:
            kwargs["reasoner_kwargs"] = remote
        verifier_kwargs = self.verifier_kwargs()
        if self.verifier is not None and with_verifier:
            kwargs["verifier"] = self.verifier.strip()
            kwargs["verifier_backend"] = (self.verifier_backend or "transformers").strip()
            if verifier_kwargs:
                kwargs["verifier_kwargs"] = verifier_kwargs
        kwargs.update(extra)
        return SegZeroPipeline.from_pretrained(self.reasoner, self.segmenter, **kwargs)
