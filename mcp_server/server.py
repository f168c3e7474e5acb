"""The MCP server: ``segment_by_reasoning`` (when a reasoner is configured), the steering tools
``segment_by_prompts``, ``refine_object``, ``inspect_result`` and ``select_objects``, and the resources of
their results. ``--reasoner none`` serves only the steering tools (and loads only the segmenter).

>>> server = create_server(ServerSettings())            # FastMCP (mcp 1.x) or MCPServer (mcp 2.x)
>>> server.run()                                          # stdio; or see :func:`serve_http`

Tests pass a ready pipeline: ``create_server(settings, pipeline=SegZeroPipeline(...))``.
"""

# No ``from __future__ import annotations`` here: both SDKs read the tool's annotations with
# ``typing.get_type_hints``, so they must be real module-level objects.

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import anyio

from segzero_tool import __version__
from segzero_tool.errors import SegZeroError

from . import compat
from .compat import CallToolResult, Context
from .models import (
    INSPECT_DESCRIPTION,
    INSPECT_TOOL,
    PROMPTS_DESCRIPTION,
    PROMPTS_TOOL,
    REFINE_DESCRIPTION,
    REFINE_TOOL,
    SELECT_DESCRIPTION,
    SELECT_TOOL,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    AddPointsArg,
    BaseResultIdArg,
    BoxArg,
    CropsArg,
    ImageArg,
    IncludeOverlayArg,
    IndexArg,
    InspectIndicesArg,
    InspectionOutput,
    MaskEncodingArg,
    MaxObjectsArg,
    ObjectsArg,
    OptionalImageArg,
    PromptFormatArg,
    QueryArg,
    RemovePointsArg,
    ResultIdArg,
    SegmentationOutput,
    SelectIndicesArg,
    VerifyArg,
    VerifyRoundsArg,
)
from .phrase_tool import PHRASE_INSTRUCTIONS, add_phrase_tool
from .results import Encoded, image_b64
from .service import STAGES, SegZeroService, tool_error_message
from .settings import ServerSettings
from .store import ResultNotFound
from .track_tool import TRACK_INSTRUCTIONS, add_track_tool, video_wanted

if TYPE_CHECKING:  # the pipeline (numpy and friends) is imported by the background load, not at start
    from segzero_tool.pipeline import SegZeroPipeline

log = logging.getLogger("segzero_tool.mcp_server")

INSTRUCTIONS = (
    "segzero: reasoning segmentation. Call segment_by_reasoning(image, query) to find the objects in an image that "
    "answer a question needing reasoning ('what can I drink here?') and get boxes, points and masks in original-image "
    "pixels. Full-resolution masks and an overlay picture of each result are resources under "
    "segzero://results/{result_id}/. The server loads its models in the background after it starts: "
    "segzero://status says whether they are ready; a call made earlier waits for them with progress."
)
INSTRUCTIONS_NO_REASONER = (
    "segzero: masks for the objects you point at (SAM2, no reasoning model on this server). You locate the objects: "
    "call segment_by_prompts(image, objects=[{\"box\": [x1, y1, x2, y2]}, {\"points\": [[x, y]]}]) in original-image "
    "pixels; check the masks with inspect_result(result_id) (a numbered picture); fix one with "
    "refine_object(result_id, index, add_points / remove_points / box); keep the right ones with "
    "select_objects(result_id, indices). Every call returns a new result_id; full-resolution masks and an overlay "
    "are resources under segzero://results/{result_id}/. segzero://status says whether the segmenter is loaded."
)
STEERING_INSTRUCTIONS = (
    " You can also locate objects yourself: segment_by_prompts(image or result_id, objects with boxes / points), "
    "inspect_result to check masks, refine_object to fix one with clicks, select_objects to keep the right ones."
)
STATUS_URI = "segzero://status"


def create_server(settings: ServerSettings | None = None, *, pipeline: "SegZeroPipeline | None" = None,
                  service: SegZeroService | None = None) -> Any:
    """Build the MCP server (a ``FastMCP`` on mcp 1.x, an ``MCPServer`` on mcp 2.x).

    Args:
        settings: server settings (default: defaults).
        pipeline: a ready pipeline to use instead of loading ``settings.pipeline`` (tests).
        service: a ready :class:`SegZeroService` (the CLI builds and loads it first).

    Returns:
        The server; its :class:`SegZeroService` is ``server.segzero``.
    """
    settings = settings or ServerSettings()
    svc = service or SegZeroService(settings, pipeline)

    @contextlib.asynccontextmanager
    async def lifespan(_server: Any) -> AsyncIterator[dict[str, Any]]:
        # Never wait for the models here: the session must answer initialize at once. Loading starts in
        # the background (a no-op when the CLI already started it, or with a ready pipeline).
        if not settings.lazy:
            svc.start_loading()
        yield {}

    instructions = INSTRUCTIONS + STEERING_INSTRUCTIONS if svc.has_reasoner else INSTRUCTIONS_NO_REASONER
    instructions += PHRASE_INSTRUCTIONS if svc.concept is not None else ""
    instructions += TRACK_INSTRUCTIONS if video_wanted(settings, svc) else ""
    server = compat.new_server(
        "segzero", instructions=instructions, lifespan=lifespan, log_level=settings.log_level, version=__version__,
        host=settings.host, port=settings.port, path=settings.path, transport_security=transport_security(settings),
    )
    server.segzero = svc

    async def segment_by_reasoning(
        ctx: Context,
        image: ImageArg,
        query: QueryArg,
        prompt_format: PromptFormatArg = None,
        max_objects: MaxObjectsArg = None,
        mask_encoding: MaskEncodingArg = "rle",
        include_overlay: IncludeOverlayArg = False,
        verify: VerifyArg = False,
        verify_rounds: VerifyRoundsArg = 2,
    ) -> Annotated[CallToolResult, SegmentationOutput]:
        async def progress(step: float, message: str) -> None:
            await ctx.report_progress(step, STAGES, message)

        try:
            done = await svc.segment(image, query, prompt_format=prompt_format, max_objects=max_objects,
                                     mask_encoding=mask_encoding, include_overlay=include_overlay, progress=progress,
                                     verify=verify, verify_rounds=verify_rounds)
        except SegZeroError as exc:
            log.info("%s refused: %s", TOOL_NAME, exc)
            raise compat.ToolError(tool_error_message(exc)) from None
        return _encoded_result(done)

    if svc.has_reasoner:
        server.tool(
            name=TOOL_NAME, title="Segment by reasoning", description=TOOL_DESCRIPTION,
            annotations=compat.ToolAnnotations(title="Segment by reasoning", readOnlyHint=True, destructiveHint=False,
                                               idempotentHint=False, openWorldHint=settings.allow_urls),
        )(segment_by_reasoning)
    _add_steering_tools(server, svc, settings)
    add_phrase_tool(server, svc, settings)  # segment_phrase, when a concept model is configured
    add_track_tool(server, svc, settings)  # track_by_reasoning, with PyAV and a reasoner (or --video / --no-video)
    _add_resources(server, svc)
    compat.set_server_version(server, __version__)
    compat.resource_not_found_as_invalid_params(server, ResultNotFound)
    return server


def _encoded_result(done: Encoded) -> CallToolResult:
    content: list[Any] = [compat.TextContent(type="text", text=done.text)]
    if done.overlay is not None:
        data, mime = done.overlay
        content.append(compat.ImageContent(type="image", data=image_b64(data), mimeType=mime))
    content.extend(compat.ResourceLink(type="resource_link", **link) for link in done.links)
    return compat.tool_result(content, done.output.model_dump(mode="json"))


def _refused(name: str, exc: SegZeroError) -> compat.ToolError:
    log.info("%s refused: %s", name, exc)
    return compat.ToolError(tool_error_message(exc))


def _add_steering_tools(server: Any, svc: SegZeroService, settings: ServerSettings) -> None:
    """``segment_by_prompts``, ``refine_object``, ``inspect_result`` and ``select_objects``: thin over
    :mod:`segzero_tool.steer` through the service (live results by id, the same encoding as
    ``segment_by_reasoning``)."""

    def reporter(ctx: Context) -> Any:
        async def progress(step: float, message: str) -> None:
            await ctx.report_progress(step, STAGES, message)

        return progress

    async def segment_by_prompts(
        ctx: Context,
        objects: ObjectsArg,
        image: OptionalImageArg = None,
        result_id: BaseResultIdArg = None,
        mask_encoding: MaskEncodingArg = "rle",
        include_overlay: IncludeOverlayArg = False,
    ) -> Annotated[CallToolResult, SegmentationOutput]:
        try:
            done = await svc.segment_by_prompts(objects, image=image, result_id=result_id, mask_encoding=mask_encoding,
                                                include_overlay=include_overlay, progress=reporter(ctx))
        except SegZeroError as exc:
            raise _refused(PROMPTS_TOOL, exc) from None
        return _encoded_result(done)

    async def refine_object(
        ctx: Context,
        result_id: ResultIdArg,
        index: IndexArg,
        add_points: AddPointsArg = None,
        remove_points: RemovePointsArg = None,
        box: BoxArg = None,
        mask_encoding: MaskEncodingArg = "rle",
        include_overlay: IncludeOverlayArg = False,
    ) -> Annotated[CallToolResult, SegmentationOutput]:
        try:
            done = await svc.refine_object(result_id, index, add_points=add_points, remove_points=remove_points,
                                           box=box, mask_encoding=mask_encoding, include_overlay=include_overlay,
                                           progress=reporter(ctx))
        except SegZeroError as exc:
            raise _refused(REFINE_TOOL, exc) from None
        return _encoded_result(done)

    async def inspect_result(
        ctx: Context,
        result_id: ResultIdArg,
        indices: InspectIndicesArg = None,
        crops: CropsArg = False,
    ) -> Annotated[CallToolResult, InspectionOutput]:
        try:
            seen = await svc.inspect_result(result_id, indices, crops, progress=reporter(ctx))
        except SegZeroError as exc:
            raise _refused(INSPECT_TOOL, exc) from None
        out = InspectionOutput(result_id=result_id, indices=list(seen.indices), crops=seen.crops, text=seen.text,
                               mime_type=seen.mime_type, width=seen.image.width, height=seen.image.height,
                               picture_bytes=len(seen.data), reduced=seen.reduced)
        content = [compat.TextContent(type="text", text=seen.text),
                   compat.ImageContent(type="image", data=image_b64(seen.data), mimeType=seen.mime_type)]
        return compat.tool_result(content, out.model_dump(mode="json"))

    async def select_objects(
        ctx: Context,
        result_id: ResultIdArg,
        indices: SelectIndicesArg,
        mask_encoding: MaskEncodingArg = "rle",
        include_overlay: IncludeOverlayArg = False,
    ) -> Annotated[CallToolResult, SegmentationOutput]:
        try:
            done = await svc.select_objects(result_id, indices, mask_encoding=mask_encoding,
                                            include_overlay=include_overlay, progress=reporter(ctx))
        except SegZeroError as exc:
            raise _refused(SELECT_TOOL, exc) from None
        return _encoded_result(done)

    open_world = settings.allow_urls
    for fn, name, title, description, world in (
            (segment_by_prompts, PROMPTS_TOOL, "Segment by prompts (boxes / points)", PROMPTS_DESCRIPTION, open_world),
            (refine_object, REFINE_TOOL, "Refine one object's mask", REFINE_DESCRIPTION, False),
            (inspect_result, INSPECT_TOOL, "Inspect a result (numbered masks)", INSPECT_DESCRIPTION, False),
            (select_objects, SELECT_TOOL, "Select objects of a result", SELECT_DESCRIPTION, False)):
        server.tool(name=name, title=title, description=description,
                    annotations=compat.ToolAnnotations(title=title, readOnlyHint=True, destructiveHint=False,
                                                       idempotentHint=name in (INSPECT_TOOL,),
                                                       openWorldHint=world))(fn)


def _add_resources(server: Any, svc: SegZeroService) -> None:
    store = svc.store

    async def read(fn: Any, *args: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except ResultNotFound as exc:
            raise compat.ResourceNotFoundError(str(exc)) from None

    @server.resource("segzero://results/{result_id}/mask.png", name="union_mask", mime_type="image/png",
                     description="Union of all object masks of a result: 0/255 PNG, original image size.")
    async def union_mask(result_id: str) -> bytes:
        return await read(store.mask_png, result_id, None)

    @server.resource("segzero://results/{result_id}/objects/{index}/mask.png", name="object_mask",
                     mime_type="image/png",
                     description="One object's mask (index as in the result's objects): 0/255 PNG, original size.")
    async def object_mask(result_id: str, index: str) -> bytes:
        if not index.isdigit():
            raise compat.ResourceNotFoundError(f"object index must be a number 0, 1, 2, ..., got {index!r}")
        return await read(store.mask_png, result_id, int(index))

    @server.resource("segzero://results/{result_id}/overlay.png", name="overlay", mime_type="image/png",
                     description="The image with masks in colour, boxes and points drawn (PNG, longest side bounded).")
    async def overlay(result_id: str) -> bytes:
        return await read(store.overlay_png, result_id)

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Any:
        """Completions for the result templates: recent result ids (most recent first), object indices."""
        uri = getattr(ref, "uri", None)
        if not isinstance(uri, str) or not uri.startswith("segzero://results/"):
            return None
        partial = str(getattr(argument, "value", "") or "")
        if argument.name == "result_id":
            values = [rid for rid in reversed(store.ids()) if rid.startswith(partial)][:100]
        elif argument.name == "index":
            given = dict(getattr(context, "arguments", None) or {})
            try:
                count = store.get(given.get("result_id", "")).n_objects
            except ResultNotFound:
                count = 0
            values = [str(i) for i in range(count) if str(i).startswith(partial)][:100]
        else:
            return None
        return compat.Completion(values=values, total=len(values), hasMore=False)

    @server.resource(STATUS_URI, name="status", mime_type="application/json",
                     description="The server's state: models loading / ready / failed (with the cause), the models "
                                 "and device, the call queue and the stored results.")
    async def status() -> str:
        return json.dumps(svc.status(), ensure_ascii=False)

    @server.resource("segzero://results/{result_id}/result.json", name="result_json", mime_type="application/json",
                     description="A whole result as JSON: reasoning, parse status, objects with COCO RLE masks, union.")
    async def result_json(result_id: str) -> str:
        entry = await read(store.get, result_id)
        return json.dumps(entry.result_dict, ensure_ascii=False)


# --- HTTP ------------------------------------------------------------------------------------------

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(settings: ServerSettings) -> list[str]:
    """Host header patterns in the SDK's syntax (``name`` or ``name:port`` exact, ``name:*`` any port):
    the loopback names, the bind address unless it is a wildcard, and ``--allow-host`` entries."""
    names = list(_LOOPBACK_HOSTS)
    host = settings.host.strip()
    if host not in ("0.0.0.0", "::", "[::]", ""):
        names.append(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    names.extend(settings.allowed_hosts)
    out: list[str] = []
    for name in names:
        name = name.strip().lower()
        has_port = "]:" in name if name.startswith("[") else ":" in name
        for pattern in ([name] if has_port else [name, f"{name}:*"]):
            if pattern not in out:
                out.append(pattern)
    return out


def allowed_origins(settings: ServerSettings) -> list[str]:
    """Origin patterns: loopback origins on any port (http and https) and ``--allow-origin`` entries."""
    out = [f"{scheme}://{h}:*" for scheme in ("http", "https") for h in _LOOPBACK_HOSTS]
    out += [f"{scheme}://{h}" for scheme in ("http", "https") for h in _LOOPBACK_HOSTS]
    out += [o.strip().rstrip("/").lower() for o in settings.allowed_origins if o.strip()]
    return out


def transport_security(settings: ServerSettings) -> compat.TransportSecuritySettings:
    """The SDK's DNS-rebinding settings with the same lists as :class:`~.http_guard.HttpGuard`."""
    return compat.TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                            allowed_hosts=allowed_hosts(settings),
                                            allowed_origins=allowed_origins(settings))


def http_app(server: Any, settings: ServerSettings) -> Any:
    """The SDK's streamable-HTTP ASGI app wrapped in :class:`~.http_guard.HttpGuard` (Host, Origin, token)."""
    from .http_guard import HttpGuard

    app = HealthRoute(compat.streamable_http_app(server), server.segzero, settings.health_path)
    return HttpGuard(app, token=settings.auth_token, hosts=allowed_hosts(settings), origins=allowed_origins(settings),
                     max_body_bytes=settings.max_request_bytes)


class HealthRoute:
    """``GET <health_path>`` answers the service's status as JSON (200 when the models are ready, 503
    while they load or after a failed load, for load balancers); everything else goes to ``app``."""

    def __init__(self, app: Any, service: SegZeroService, path: str = "/health") -> None:
        self.app, self.service, self.path = app, service, path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        if scope.get("method") not in ("GET", "HEAD"):
            body, status = b"use GET", 405
        else:
            data = self.service.status()
            body = json.dumps(data, ensure_ascii=False).encode("utf-8")
            status = 200 if data["state"] == "ready" else 503
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json" if status != 405 else b"text/plain"),
                                (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body if scope.get("method") != "HEAD" else b""})


async def serve_http(server: Any, settings: ServerSettings) -> None:
    """Serve streamable HTTP on ``settings.host:port`` + ``path`` with uvicorn (logs on stderr)."""
    import uvicorn

    config = uvicorn.Config(http_app(server, settings), host=settings.host, port=settings.port,
                            log_config=None, access_log=settings.log_level == "DEBUG",
                            log_level=settings.log_level.lower(), lifespan="on", timeout_graceful_shutdown=5)
    userver = uvicorn.Server(config)
    log.info("starting streamable HTTP on http://%s:%d%s%s (status: GET %s)", settings.host if ":" not in settings.host
             else f"[{settings.host}]", settings.port, settings.path,
             " (bearer token required)" if settings.auth_token else "", settings.health_path)
    try:
        await userver.serve()
    except SystemExit:  # uvicorn exits when it cannot bind; it has logged why
        userver.started = False
    if not userver.started:
        raise SegZeroError(f"could not serve HTTP on {settings.host}:{settings.port} (is the port in use? see the "
                           "log above); pick another with --port")


__all__ = ["create_server", "http_app", "HealthRoute", "STATUS_URI", "serve_http", "transport_security", "allowed_hosts", "allowed_origins",
           "INSTRUCTIONS"]
