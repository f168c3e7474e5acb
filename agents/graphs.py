"""Graph factories for ``langgraph dev`` / LangGraph Server (see ``langgraph.json`` at the repository root).

Importing this module loads no model: the factories build their graphs on first call (the server
calls them per run; the graphs are cached), and the segmentation pipeline loads on the first
segmentation request.

Environment:

* ``SEGZERO_*`` — the pipeline (``SEGZERO_PRESET``, ``SEGZERO_REASONER``, ``SEGZERO_SEGMENTER``,
  ``SEGZERO_DEVICE``, …; see :class:`segzero_tool.settings.PipelineSettings`), shared by both graphs;
* ``SEGZERO_AGENT_MODEL`` — the chat model of ``segmentation_agent`` as ``provider:model``
  (``anthropic:claude-sonnet-4-5``, ``openai:gpt-4.1``); required for that graph. An assistant may
  override it with ``{"configurable": {"model": "provider:model"}}``;
* ``SEGZERO_PLANNER_MODEL`` — optional chat model of ``robot_planner`` (default: the rule-based parser);
* ``SEGZERO_PLANNER_MAX_ATTEMPTS`` (default 2), ``SEGZERO_PLANNER_MAX_DEPTH_M`` (default: no limit),
  ``SEGZERO_PLANNER_DEPTH_SCALE`` (default 1.0: depth maps in metres).

``provider:model`` strings go through ``langchain``'s ``init_chat_model`` when the ``langchain``
package is installed; otherwise ``anthropic:`` (``langchain-anthropic``) and ``openai:``
(``langchain-openai``) are built directly. Credentials come from the provider's usual variables
(``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import RunnableConfig

    from segzero_tool.pipeline import SegZeroPipeline

ENV_AGENT_MODEL = "SEGZERO_AGENT_MODEL"
ENV_PLANNER_MODEL = "SEGZERO_PLANNER_MODEL"


class AgentModelError(ValueError):
    """The chat model is not configured, unknown, or its integration package is missing."""


class LazyPipeline:
    """A stand-in for :class:`~segzero_tool.SegZeroPipeline` that loads the real one on first use
    (thread-safe; in async code the loading runs in a worker thread).

    Args:
        build: returns the pipeline; default: ``PipelineSettings.resolve().build_pipeline()``
            (``SEGZERO_*`` environment variables).
    """

    def __init__(self, build: Callable[[], SegZeroPipeline] | None = None) -> None:
        self._build = build or _pipeline_from_env
        self._pipeline: SegZeroPipeline | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    def get(self) -> SegZeroPipeline:
        """The pipeline, loading it now if needed."""
        if self._pipeline is None:
            with self._lock:
                if self._pipeline is None:
                    self._pipeline = self._build()
        return self._pipeline

    def segment(self, image: Any, query: str, **kwargs: Any) -> Any:
        return self.get().segment(image, query, **kwargs)

    async def asegment(self, image: Any, query: str, **kwargs: Any) -> Any:
        pipeline = self._pipeline or await asyncio.to_thread(self.get)
        return await pipeline.asegment(image, query, **kwargs)

    def refine_object(self, result: Any, index: int, **kwargs: Any) -> Any:
        """The pipeline's ``refine_object`` (the planner refines a mask that disagrees with its box)."""
        return self.get().refine_object(result, index, **kwargs)

    def __getattr__(self, name: str) -> Any:  # max_pixels, max_objects, ... of the real pipeline
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.get(), name)


def _pipeline_from_env() -> SegZeroPipeline:
    from segzero_tool.settings import PipelineSettings

    return PipelineSettings.resolve().build_pipeline()


def load_chat_model(spec: str) -> BaseChatModel:
    """A chat model from ``provider:model`` (``anthropic:claude-sonnet-4-5``).

    Raises:
        AgentModelError: malformed spec, unknown provider, or the integration is not installed.
    """
    provider, sep, name = spec.strip().partition(":")
    if not sep or not provider or not name:
        raise AgentModelError(f"chat model {spec!r} is not of the form provider:model, e.g. anthropic:claude-sonnet-4-5")
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        init_chat_model = None
    if init_chat_model is not None:
        return init_chat_model(name, model_provider=provider)
    packages = {"anthropic": ("langchain_anthropic", "ChatAnthropic", "langchain-anthropic"),
                "openai": ("langchain_openai", "ChatOpenAI", "langchain-openai")}
    if provider not in packages:
        raise AgentModelError(f"unknown chat model provider {provider!r}; install `langchain` (init_chat_model "
                              f"knows them all) or use one of {', '.join(packages)}")
    module, cls, dist = packages[provider]
    try:
        mod = __import__(module, fromlist=[cls])
    except ImportError:
        raise AgentModelError(f"{spec!r} needs the {dist} package: pip install {dist}") from None
    return getattr(mod, cls)(model=name)


@functools.cache
def shared_pipeline() -> LazyPipeline:
    """The one (lazy) pipeline both graphs use."""
    return LazyPipeline()


def _configurable(config: RunnableConfig | dict | None) -> dict[str, Any]:
    return dict((config or {}).get("configurable") or {})


@functools.lru_cache(maxsize=8)
def _agent_graph(spec: str) -> Any:
    from segzero_tool.agents.chat_agent import build_segmentation_agent
    from segzero_tool.agents.tool import SegmentByReasoningTool

    tool = SegmentByReasoningTool.from_pipeline(shared_pipeline())
    return build_segmentation_agent(load_chat_model(spec), tool)


def segmentation_agent(config: RunnableConfig) -> Any:
    """``langgraph dev`` factory: the tool-calling chat agent (``SEGZERO_AGENT_MODEL``)."""
    spec = _configurable(config).get("model") or os.environ.get(ENV_AGENT_MODEL)
    if not spec:
        raise AgentModelError(f"set {ENV_AGENT_MODEL}=provider:model (e.g. anthropic:claude-sonnet-4-5) to serve "
                              "segmentation_agent, or pass {'configurable': {'model': ...}}")
    return _agent_graph(str(spec))


@functools.lru_cache(maxsize=8)
def _planner_graph(spec: str, max_attempts: int, max_depth_m: float | None, depth_scale: float) -> Any:
    from segzero_tool.agents.planner import build_planner_graph

    model = load_chat_model(spec) if spec else None
    return build_planner_graph(shared_pipeline(), model=model, max_attempts=max_attempts, max_depth_m=max_depth_m,
                               depth_scale=depth_scale)


def robot_planner(config: RunnableConfig) -> Any:
    """``langgraph dev`` factory: the robotics planner (rule-based unless ``SEGZERO_PLANNER_MODEL`` is set).

    Input: ``{"task": "...", "image": "<path on the server, or a data: URL>"}`` or ``{"task": "...",
    "frames": "<a video file or a folder of frames on the server>"}``, plus optional ``depth`` (nested lists) and
    ``intrinsics`` (``{"fx", "fy", "cx", "cy"}``).
    """
    cfg = _configurable(config)
    env = os.environ
    depth = cfg.get("max_depth_m", env.get("SEGZERO_PLANNER_MAX_DEPTH_M"))
    return _planner_graph(
        str(cfg.get("model") or env.get(ENV_PLANNER_MODEL) or ""),
        int(cfg.get("max_attempts", env.get("SEGZERO_PLANNER_MAX_ATTEMPTS", 2))),
        float(depth) if depth not in (None, "") else None,
        float(cfg.get("depth_scale", env.get("SEGZERO_PLANNER_DEPTH_SCALE", 1.0))),
    )


__all__ = ["AgentModelError", "LazyPipeline", "load_chat_model", "robot_planner", "segmentation_agent",
           "shared_pipeline"]
