"""The MCP server's settings: one frozen object fed by defaults, ``SEGZERO_MCP_*`` environment
variables and command-line flags (flags win over the environment).

The model side (reasoner, segmenter, backends, device, ...) is a
:class:`~segzero_tool.settings.PipelineSettings`, read exactly like the ``segzero segment`` command
reads it: ``--config`` file < ``SEGZERO_*`` variables < flags.

Server variables (see :data:`ENV_NAMES`)::

    SEGZERO_MCP_TRANSPORT=stdio|http   SEGZERO_MCP_HOST   SEGZERO_MCP_PORT   SEGZERO_MCP_PATH
    SEGZERO_MCP_TOKEN                  SEGZERO_MCP_ALLOWED_HOSTS / _ALLOWED_ORIGINS (comma-separated)
    SEGZERO_MCP_ROOTS (os.pathsep-separated folders)
    SEGZERO_MCP_ALLOW_URLS=1           SEGZERO_MCP_ALLOW_PRIVATE_URLS=1   SEGZERO_MCP_URL_TIMEOUT
    SEGZERO_MCP_MAX_DOWNLOAD_BYTES     SEGZERO_MCP_MAX_BASE64_BYTES       SEGZERO_MCP_MAX_PIXELS ...
    SEGZERO_MCP_LIVE_RESULTS (16)      SEGZERO_MCP_LIVE_STORE_BYTES (1GB) SEGZERO_MCP_LIVE_TTL (1800 s):
        the results the steering tools (refine_object, inspect_result, select_objects) can still use

``SEGZERO_REASONER=none`` (``--reasoner none``) loads only the segmenter and serves only the steering tools.
``SEGZERO_VERIFIER`` (``--verifier``, with ``--verifier-backend`` / ``--verifier-base-url`` / ...) loads
another model at start as the verifier of ``segment_by_reasoning(verify=true)`` (default: the reasoner).

The server's ``max_pixels`` and ``max_objects`` are the limits that apply: they are copied into
``pipeline`` so that the pipeline enforces the same values.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, NoReturn

from segzero_tool.cli import (
    REMOTE_REASONER_FIELDS,
    VERIFIER_FIELDS,
    add_model_selection_options,
    add_verifier_options,
)
from segzero_tool.settings import PipelineSettings, SettingsError

from .security import InputPolicy

log = logging.getLogger("segzero_tool.mcp_server")

ENV_PREFIX = "SEGZERO_MCP_"
#: Server field -> environment variable. ``pipeline`` is read from ``SEGZERO_*`` instead.
ENV_NAMES: dict[str, str] = {
    "transport": "SEGZERO_MCP_TRANSPORT",
    "host": "SEGZERO_MCP_HOST",
    "port": "SEGZERO_MCP_PORT",
    "path": "SEGZERO_MCP_PATH",
    "health_path": "SEGZERO_MCP_HEALTH_PATH",
    "auth_token": "SEGZERO_MCP_TOKEN",
    "allowed_hosts": "SEGZERO_MCP_ALLOWED_HOSTS",
    "allowed_origins": "SEGZERO_MCP_ALLOWED_ORIGINS",
    "roots": "SEGZERO_MCP_ROOTS",
    "allow_urls": "SEGZERO_MCP_ALLOW_URLS",
    "allow_private_urls": "SEGZERO_MCP_ALLOW_PRIVATE_URLS",
    "url_timeout_s": "SEGZERO_MCP_URL_TIMEOUT",
    "max_download_bytes": "SEGZERO_MCP_MAX_DOWNLOAD_BYTES",
    "max_base64_bytes": "SEGZERO_MCP_MAX_BASE64_BYTES",
    "max_redirects": "SEGZERO_MCP_MAX_REDIRECTS",
    "max_pixels": "SEGZERO_MCP_MAX_PIXELS",
    "max_concurrency": "SEGZERO_MCP_MAX_CONCURRENCY",
    "max_queue": "SEGZERO_MCP_MAX_QUEUE",
    "max_results": "SEGZERO_MCP_MAX_RESULTS",
    "max_store_bytes": "SEGZERO_MCP_MAX_STORE_BYTES",
    "live_results": "SEGZERO_MCP_LIVE_RESULTS",
    "live_store_bytes": "SEGZERO_MCP_LIVE_STORE_BYTES",
    "live_ttl_s": "SEGZERO_MCP_LIVE_TTL",
    "max_result_bytes": "SEGZERO_MCP_MAX_RESULT_BYTES",
    "max_request_bytes": "SEGZERO_MCP_MAX_REQUEST_BYTES",
    "resource_links": "SEGZERO_MCP_RESOURCE_LINKS",
    "overlay_max_side": "SEGZERO_MCP_OVERLAY_MAX_SIDE",
    "overlay_max_bytes": "SEGZERO_MCP_OVERLAY_MAX_BYTES",
    "max_objects": "SEGZERO_MCP_MAX_OBJECTS",
    "lazy": "SEGZERO_MCP_LAZY",
    "concept_model": "SEGZERO_MCP_CONCEPT_MODEL",
    "video": "SEGZERO_MCP_VIDEO",
    "max_video_frames": "SEGZERO_MCP_MAX_VIDEO_FRAMES",
    "log_level": "SEGZERO_MCP_LOG_LEVEL",
}
_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SIZE_RE = re.compile(r"^\s*(\d[\d_]*)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
               "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30}
_BYTE_FIELDS = frozenset({"max_download_bytes", "max_base64_bytes", "max_store_bytes", "max_result_bytes",
                          "max_request_bytes", "overlay_max_bytes", "live_store_bytes"})
_INT_FIELDS = frozenset({"port", "max_redirects", "max_pixels", "max_concurrency", "max_queue", "max_results",
                         "overlay_max_side", "max_objects", "live_results", "max_video_frames"}) | _BYTE_FIELDS
_BOOL_FIELDS = frozenset({"allow_urls", "allow_private_urls", "lazy", "resource_links", "video"})
#: Flags shared with ``segzero segment`` that set :class:`PipelineSettings` fields.
_PIPELINE_FLAGS = ("preset", "reasoner", "segmenter", "reasoner_backend", "segmenter_backend", "prompt_format",
                   "device", "dtype", "frame_size", "coords", "max_new_tokens", *REMOTE_REASONER_FIELDS, *VERIFIER_FIELDS)


def parse_bool(value: str, name: str) -> bool:
    """``1/true/yes/on`` -> True, ``0/false/no/off`` -> False (case-insensitive); else SettingsError."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{name} must be a yes/no value (1, true, yes, on / 0, false, no, off), got {value!r}")


def parse_size(value: str, name: str) -> int:
    """A byte count: ``25000000``, ``25_000_000``, ``25MB``, ``25M``, ``24MiB`` ... ; else SettingsError."""
    match = _SIZE_RE.match(value)
    if not match:
        raise SettingsError(f"{name} must be a number of bytes such as 25000000 or 25MB, got {value!r}")
    return int(match.group(1).replace("_", "")) * _SIZE_UNITS[(match.group(2) or "").lower()]


def _parse_int(value: str, name: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {value!r}") from None


def _parse_float(value: str, name: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {value!r}") from None


def _split(value: str, sep: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(sep) if part.strip())


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback address literals (``127.x.y.z``, ``::1``)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSettings:
    """Everything the MCP server needs to start; every field has a safe default.

    Attributes:
        pipeline: what to load (reasoner, segmenter, backends, device, ...).
        transport: ``stdio`` (default) or ``http`` (streamable HTTP).
        host: HTTP bind address (loopback by default).
        port: HTTP port (0 picks a free one).
        path: HTTP endpoint path.
        health_path: HTTP path of the status route (``GET``: JSON; 200 when ready, 503 otherwise).
        auth_token: bearer token required on HTTP when set.
        allowed_hosts: extra ``Host`` header values accepted on HTTP (loopback names always are).
        allowed_origins: ``Origin`` header values accepted on HTTP.
        roots: folders local image paths must lie in; empty -> the working directory at start.
        allow_urls: fetch ``http(s)`` image URLs.
        allow_private_urls: also fetch from loopback / private / link-local addresses.
        url_timeout_s: whole-download timeout.
        max_download_bytes: largest downloaded image.
        max_base64_bytes: largest decoded ``data:`` URL / base64 image.
        max_redirects: redirects followed per download.
        max_pixels: largest image in pixels (copied into ``pipeline``).
        max_concurrency: segmentations running at once.
        max_queue: calls allowed to wait beyond those; more get a "busy" error.
        max_results: results kept for reading back by id.
        max_store_bytes: memory for those kept results.
        live_results: results kept live (with their image and low-resolution mask logits) for the steering
            tools ``refine_object``, ``inspect_result`` and ``select_objects`` (default 16).
        live_store_bytes: memory for those live results (default 1 GB; images counted per result).
        live_ttl_s: seconds a live result can be steered after it was made (default 1800).
        max_result_bytes: budget of one tool result as sent to the client (text, structured content and
            any inline picture together); inline masks that do not fit are left out and named by URI.
        max_request_bytes: largest HTTP request body; larger ones are refused (413) before being read.
        resource_links: also put ``resource_link`` content blocks (mask, overlay and JSON URIs) into
            tool results. Off by default: some clients turn them into file blocks that chat-model
            APIs refuse; the URIs are always in the text and the structured content.
        overlay_max_side: longest side of overlay pictures.
        overlay_max_bytes: largest overlay picture returned inline.
        max_objects: most objects per answer (copied into ``pipeline``).
        lazy: load the models on the first call instead of at start.
        concept_model: the SAM 3 concept model of the ``segment_phrase`` tool (``sam3`` = ``facebook/sam3``,
            a hub id or a folder); ``none`` (default): the tool is not served (SAM 3 is gated on the hub).
        video: serve ``track_by_reasoning`` (video tracking): ``None`` (default) when PyAV is installed and the
            server has a reasoner; ``True`` also refuses to start without PyAV; ``False`` never.
        max_video_frames: most frames one ``track_by_reasoning`` call processes (default 3000).
        log_level: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL``.
    """

    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    transport: Literal["stdio", "http"] = "stdio"
    host: str = "127.0.0.1"
    port: int = 8765
    path: str = "/mcp"
    health_path: str = "/health"
    auth_token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    roots: tuple[Path, ...] = ()
    allow_urls: bool = False
    allow_private_urls: bool = False
    url_timeout_s: float = 15.0
    max_download_bytes: int = 25_000_000
    max_base64_bytes: int = 25_000_000
    max_redirects: int = 5
    max_pixels: int = 40_000_000
    max_concurrency: int = 2
    max_queue: int = 16
    max_results: int = 64
    max_store_bytes: int = 256_000_000
    live_results: int = 16
    live_store_bytes: int = 1_000_000_000
    live_ttl_s: float = 1800.0
    max_result_bytes: int = 512 * 1024
    max_request_bytes: int = 40_000_000
    resource_links: bool = False
    overlay_max_side: int = 1024
    overlay_max_bytes: int = 800_000
    max_objects: int = 50
    lazy: bool = False
    log_level: str = "INFO"
    concept_model: str = "none"
    video: bool | None = None
    max_video_frames: int = 3000

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.transport not in ("stdio", "http"):
            raise SettingsError(f"transport must be 'stdio' or 'http', got {self.transport!r}")
        if not self.host.strip():
            raise SettingsError("host must not be empty; use 127.0.0.1 to serve this machine only")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be between 0 and 65535, got {self.port}")
        if not self.path.startswith("/"):
            raise SettingsError(f"path must start with '/', e.g. /mcp; got {self.path!r}")
        if not self.health_path.startswith("/") or self.health_path == self.path:
            raise SettingsError(f"health path must start with '/' and differ from the MCP path, got {self.health_path!r}")
        token = self.auth_token.strip() if self.auth_token is not None else None
        set_(self, "auth_token", token or None)
        set_(self, "allowed_hosts", tuple(self.allowed_hosts))
        set_(self, "allowed_origins", tuple(self.allowed_origins))
        set_(self, "roots", tuple(self._checked_root(r) for r in self.roots))
        if not self.url_timeout_s > 0:
            raise SettingsError(f"url timeout must be a positive number of seconds, got {self.url_timeout_s}")
        if not self.live_ttl_s > 0:
            raise SettingsError(f"live ttl must be a positive number of seconds, got {self.live_ttl_s}")
        if self.pipeline.cache_ttl_s is None:  # cached embeddings live as long as the results that use them
            set_(self, "pipeline", replace(self.pipeline, cache_ttl_s=self.live_ttl_s))
        for name in ("max_download_bytes", "max_base64_bytes", "max_pixels", "max_concurrency", "max_results",
                     "max_store_bytes", "max_result_bytes", "max_request_bytes", "overlay_max_side", "overlay_max_bytes", "max_objects", "live_results", "live_store_bytes", "max_video_frames"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("max_queue", "max_redirects"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")
        level = self.log_level.strip().upper()
        if level not in _LOG_LEVELS:
            raise SettingsError(f"log level must be one of {', '.join(_LOG_LEVELS)}, got {self.log_level!r}")
        set_(self, "log_level", level)
        concept = str(self.concept_model).strip()
        set_(self, "concept_model", "none" if concept.lower() in ("", "none", "off", "no", "false", "0") else concept)
        if self.max_result_bytes < 64 * 1024:
            raise SettingsError(f"max-result-bytes must be at least 64KiB (65536), got {self.max_result_bytes}")
        if self.pipeline.max_pixels != self.max_pixels or self.pipeline.max_objects != self.max_objects:
            set_(self, "pipeline", replace(self.pipeline, max_pixels=self.max_pixels, max_objects=self.max_objects))

    @staticmethod
    def _checked_root(root: str | os.PathLike[str]) -> Path:
        path = Path(os.path.realpath(Path(root).expanduser()))
        if not path.is_dir():
            raise SettingsError(f"allowed root {str(root)!r} is not an existing folder; create it or fix "
                                "--allow-root / SEGZERO_MCP_ROOTS")
        return path

    # --- derived -------------------------------------------------------------------------------

    def effective_roots(self) -> tuple[Path, ...]:
        """``roots``, or the current working directory when none are set."""
        return self.roots or (Path(os.path.realpath(Path.cwd())),)

    def input_policy(self) -> InputPolicy:
        """The :class:`~.security.InputPolicy` these settings describe."""
        return InputPolicy(
            allowed_roots=self.effective_roots(),
            allow_urls=self.allow_urls,
            allow_private_urls=self.allow_private_urls,
            url_timeout_s=self.url_timeout_s,
            max_download_bytes=self.max_download_bytes,
            max_base64_bytes=self.max_base64_bytes,
            max_redirects=self.max_redirects,
        )

    def security_warnings(self) -> list[str]:
        """Risky combinations worth a warning at start (empty when there are none)."""
        out: list[str] = []
        if self.transport == "http" and not is_loopback_host(self.host) and self.auth_token is None:
            out.append(f"serving HTTP on the non-loopback address {self.host} without an auth token: anyone who "
                       "can reach it can run segmentations and read files under the allowed roots; set "
                       "--auth-token-env NAME (or SEGZERO_MCP_TOKEN), or bind to 127.0.0.1")
        if self.allow_private_urls and self.allow_urls:
            out.append("--allow-private-urls lets callers fetch from this machine's and the local network's "
                       "addresses (SSRF); enable it only for trusted callers")
        return out

    def public_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict, with the auth token redacted."""
        d: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "pipeline":
                value = {p.name: getattr(value, p.name) for p in fields(value)}
            elif f.name == "auth_token":
                value = None if value is None else "***"
            elif f.name == "roots":
                value = [str(r) for r in self.effective_roots()]
            elif isinstance(value, tuple):
                value = list(value)
            d[f.name] = value
        return d

    # --- construction --------------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, base: ServerSettings | None = None) -> ServerSettings:
        """``base`` (default: defaults) updated from ``SEGZERO_MCP_*`` and ``SEGZERO_*`` variables.

        Empty variables count as unset. ``SEGZERO_MAX_PIXELS`` / ``SEGZERO_MAX_OBJECTS`` apply when
        their ``SEGZERO_MCP_`` forms are unset.

        Raises:
            SettingsError: a variable has an invalid value.
        """
        settings = cls._from_env(environ, base)
        for warning in settings.security_warnings():
            log.warning(warning)
        return settings

    @classmethod
    def _from_env(cls, environ: Mapping[str, str] | None, base: ServerSettings | None) -> ServerSettings:
        env = os.environ if environ is None else environ
        base = base or cls()
        updates: dict[str, Any] = {"pipeline": PipelineSettings.from_env(env, base.pipeline)}
        for name, var in ENV_NAMES.items():
            raw = env.get(var, "")
            if not raw.strip() and name in ("max_pixels", "max_objects"):
                var = PipelineSettings.ENV_PREFIX + name.upper()
                raw = env.get(var, "")
            if raw.strip():
                updates[name] = _convert_env(name, raw, var)
        try:
            return replace(base, **updates)
        except SettingsError as exc:
            raise SettingsError(f"environment: {exc}") from None

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Settings from command-line flags over the environment over defaults.

        ``--help`` prints the help and exits (``SystemExit(0)``) like any argparse program.

        Raises:
            SettingsError: an unknown flag, a bad value, a missing token variable or config file.
        """
        env = os.environ if environ is None else environ
        args = build_parser().parse_args(argv)
        settings = cls._from_env(env, None)
        overrides = {name: getattr(args, name) for name in _PIPELINE_FLAGS if getattr(args, name) is not None}
        updates: dict[str, Any] = {
            "pipeline": PipelineSettings.resolve(config=args.config, environ=env, overrides=overrides),
        }
        if args.transport is not None:
            updates["transport"] = args.transport
        for name in ("host", "port", "path", "health_path", "url_timeout_s", "max_redirects", "max_pixels", "max_concurrency",
                     "max_queue", "max_results", "overlay_max_side", "max_objects", "allow_urls", "live_results", "live_ttl_s",
                     "allow_private_urls", "lazy", "resource_links", "log_level", "concept_model", "video",
                     "max_video_frames", *_BYTE_FIELDS):
            value = getattr(args, name)
            if value is not None:
                updates[name] = value
        for name in ("allowed_hosts", "allowed_origins", "roots"):
            values = getattr(args, name)
            if values:
                updates[name] = tuple(values)
        if args.auth_token is not None:
            updates["auth_token"] = args.auth_token
        elif args.auth_token_env is not None:
            token = env.get(args.auth_token_env, "").strip()
            if not token:
                raise SettingsError(f"--auth-token-env {args.auth_token_env}: that environment variable is unset or "
                                    "empty; export the token in it first")
            updates["auth_token"] = token
        # A pipeline max_pixels / max_objects from --config applies unless the server's own was given.
        for name in ("max_pixels", "max_objects"):
            if name not in updates and not env.get(ENV_NAMES[name], "").strip() and getattr(updates["pipeline"], name) != getattr(
                    PipelineSettings(), name):
                updates[name] = getattr(updates["pipeline"], name)
        settings = replace(settings, **updates)
        for warning in settings.security_warnings():
            log.warning(warning)
        return settings


def _convert_env(name: str, raw: str, var: str) -> Any:
    if name in _BOOL_FIELDS:
        return parse_bool(raw, var)
    if name in _BYTE_FIELDS:
        return parse_size(raw, var)
    if name in _INT_FIELDS:
        return _parse_int(raw, var)
    if name in ("url_timeout_s", "live_ttl_s"):
        return _parse_float(raw, var)
    if name in ("allowed_hosts", "allowed_origins"):
        return _split(raw, ",")
    if name == "roots":
        return tuple(Path(p) for p in _split(raw, os.pathsep))
    if name == "transport":
        value = raw.strip().lower()
        if value not in ("stdio", "http"):
            raise SettingsError(f"{var} must be 'stdio' or 'http', got {raw!r}")
        return value
    return raw.strip()


# --- command line --------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`SettingsError` instead of exiting on bad input."""

    def error(self, message: str) -> NoReturn:
        raise SettingsError(f"{message}; run {self.prog} --help for the options")


def _size(value: str) -> int:
    try:
        return parse_size(value, "value")
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The ``segzero-mcp`` argument parser (its errors raise :class:`SettingsError`)."""
    p = _Parser(
        prog="segzero-mcp",
        description="MCP server: segment images by a reasoning query (a VLM reasoner writes boxes and points, "
                    "SAM2 makes the masks). Flags override SEGZERO_MCP_* / SEGZERO_* environment variables.",
    )
    t = p.add_argument_group("transport")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--http", dest="transport", action="store_const", const="http", default=None,
                      help="serve streamable HTTP instead of stdio (SEGZERO_MCP_TRANSPORT=http)")
    mode.add_argument("--stdio", dest="transport", action="store_const", const="stdio",
                      help="serve on stdin/stdout (the default)")
    t.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    t.add_argument("--port", type=int, help="HTTP port (default 8765; 0 picks a free one)")
    t.add_argument("--path", help="HTTP endpoint path (default /mcp)")
    t.add_argument("--health-path", help="HTTP status route: GET answers JSON with the loading state, models, "
                                         "device and queue; 200 when ready, 503 while loading (default /health)")
    tok = t.add_mutually_exclusive_group()
    tok.add_argument("--auth-token", help="bearer token required on HTTP (prefer --auth-token-env: flags are "
                                          "visible to other users in the process list)")
    tok.add_argument("--auth-token-env", metavar="NAME", help="read the bearer token from environment variable NAME "
                                                              "(default variable: SEGZERO_MCP_TOKEN)")
    t.add_argument("--allow-host", dest="allowed_hosts", action="append", metavar="HOST[:PORT]",
                   help="accept this Host header on HTTP (repeatable; loopback names always accepted)")
    t.add_argument("--allow-origin", dest="allowed_origins", action="append", metavar="ORIGIN",
                   help="accept this Origin header on HTTP (repeatable), e.g. https://app.example.com")

    i = p.add_argument_group("image inputs")
    i.add_argument("--allow-root", dest="roots", action="append", metavar="DIR",
                   help="local image paths must lie in DIR (repeatable; default: the working directory; "
                        "env SEGZERO_MCP_ROOTS, separated by " + repr(os.pathsep) + ")")
    i.add_argument("--allow-urls", action=argparse.BooleanOptionalAction, default=None,
                   help="fetch http(s) image URLs (off by default)")
    i.add_argument("--allow-private-urls", action=argparse.BooleanOptionalAction, default=None,
                   help="also fetch from loopback, private and link-local addresses (SSRF risk; off by default)")
    i.add_argument("--url-timeout", dest="url_timeout_s", type=float, metavar="SECONDS",
                   help="whole-download timeout (default 15)")
    i.add_argument("--max-redirects", type=int, help="redirects followed per download (default 5)")
    i.add_argument("--max-download-bytes", type=_size, metavar="BYTES", help="largest downloaded image (default 25MB)")
    i.add_argument("--max-base64-bytes", type=_size, metavar="BYTES",
                   help="largest decoded data: URL / base64 image (default 25MB)")
    i.add_argument("--max-pixels", type=int, help="largest image in pixels (default 40,000,000)")

    lim = p.add_argument_group("limits and results")
    lim.add_argument("--max-concurrency", type=int, help="segmentations running at once (default 2)")
    lim.add_argument("--max-queue", type=int, help="calls waiting beyond those before 'busy' errors (default 16)")
    lim.add_argument("--max-results", type=int, help="results kept for reading back by id (default 64)")
    lim.add_argument("--max-store-bytes", type=_size, metavar="BYTES",
                     help="memory for kept results (default 256MB)")
    lim.add_argument("--live-results", type=int,
                     help="results kept live (image and mask logits) for refine_object / inspect_result / "
                          "select_objects (default 16)")
    lim.add_argument("--live-store-bytes", type=_size, metavar="BYTES",
                     help="memory for live results (default 1GB; fewer results are kept when they are large)")
    lim.add_argument("--live-ttl", dest="live_ttl_s", type=float, metavar="SECONDS",
                     help="seconds a result stays live for the steering tools (default 1800)")
    lim.add_argument("--max-result-bytes", type=_size, metavar="BYTES",
                     help="budget of one tool result as sent to the client: text, structured content and inline "
                          "picture together; masks that do not fit are left out and named by resource URI "
                          "(default 512KiB)")
    lim.add_argument("--max-request-bytes", type=_size, metavar="BYTES",
                     help="largest HTTP request body, refused with 413 before it is read (default 40MB)")
    lim.add_argument("--resource-links", action=argparse.BooleanOptionalAction, default=None,
                     help="also return resource_link content blocks (off by default: some clients turn them "
                          "into file blocks that chat-model APIs refuse; the URIs are always in the text)")
    lim.add_argument("--overlay-max-side", type=int, help="longest side of overlay pictures (default 1024)")
    lim.add_argument("--overlay-max-bytes", type=_size, metavar="BYTES",
                     help="largest overlay picture returned inline (default 800KB)")
    lim.add_argument("--max-objects", type=int, help="most objects per answer (default 50)")

    add_model_selection_options(p)
    add_verifier_options(p.add_argument_group(
        "self-check verifier (segment_by_reasoning with verify=true; SEGZERO_VERIFIER, ...)"))

    c = p.add_argument_group("concept segmentation (the segment_phrase tool)")
    c.add_argument("--concept-model", nargs="?", const="sam3", metavar="MODEL",
                   help="serve segment_phrase (every instance of a noun phrase) with this SAM 3 model: sam3 (= "
                        "facebook/sam3, gated: request access and `hf auth login` first; the value when the flag "
                        "is given alone), a hub id or a local folder; none (default) does not serve it. Loads in "
                        "the background with the other models (env SEGZERO_MCP_CONCEPT_MODEL)")
    v = p.add_argument_group("video (the track_by_reasoning tool)")
    v.add_argument("--video", action=argparse.BooleanOptionalAction, default=None,
                   help="serve track_by_reasoning (follow the objects a query finds through a video's frames); by "
                        "default served when PyAV (the video extra) is installed and there is a reasoner; --video "
                        "refuses to start without PyAV (env SEGZERO_MCP_VIDEO)")
    v.add_argument("--max-video-frames", type=int, help="most frames one track_by_reasoning call processes "
                                                        "(default 3000)")
    o = p.add_argument_group("other")
    o.add_argument("--lazy", action=argparse.BooleanOptionalAction, default=None,
                   help="load the models on the first call instead of at start")
    o.add_argument("--log-level", type=str.upper, choices=list(_LOG_LEVELS), help="log level on stderr (default INFO)")
    return p
