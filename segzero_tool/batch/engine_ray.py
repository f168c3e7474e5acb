"""The Ray engine: a batch job as a Ray Data pipeline, on this machine or a cluster.

    rows -> chunks of ``batch_size`` rows -> decode (CPU tasks) -> reason (actor pool, one model per actor; or
    Ray Data's vLLM processor) -> segment + write (actor pool, one segmenter per actor) -> receipts to the driver

Every stage runs the functions of :mod:`segzero_tool.batch.stages` on the same chunks of rows as the local engine
(one ``generate`` call per chunk, the segmenter once per distinct image of a chunk), so the records are identical.
The segmenter actors append their records to ``OUT/shards/<uuid>.jsonl`` (flushed and fsync'd per record) and send
the driver only receipts; the job folds the shards into ``results.jsonl`` (see
:mod:`segzero_tool.batch.results_file`). ``OUT`` must therefore be on storage every node sees.

Models load on the workers, never on the driver: each reasoner actor builds the reasoner of the settings, each
segmenter actor the segmenter. Plugins (``package.module:Class`` backends) must be importable on every node
(installed there, or on ``PYTHONPATH`` through ``runtime_env={"env_vars": {"PYTHONPATH": ...}}``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError, SegZeroError
from .engine import BatchEngine, Emit
from .stages import DecodedRow, StageConfig, decode_row, finish_rows, reason_rows

if TYPE_CHECKING:
    from ..settings import PipelineSettings
    from .inputs import BatchRow

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "segzero-tool[ray]"'
#: Most blocks the input is cut into (one chunk of rows per block up to this many chunks).
MAX_BLOCKS = 4096
_VERIFIER_FIELDS = ("verifier", "verifier_backend", "verifier_base_url", "verifier_api_key_env",
                    "verifier_model_name")


def import_ray() -> Any:
    """``ray`` (with Ray Data), or :class:`MissingDependencyError` with the install hint."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"--engine ray needs Ray Data ({exc.name or 'ray'} is not installed): "
                                     f"{INSTALL_HINT}") from None
    return ray


def stage_config(settings: PipelineSettings) -> StageConfig:
    """``StageConfig.of(settings.build_pipeline(...))`` without loading a model: the prompt format, token budget
    and coordinates come from the reasoner's registry entry as :func:`segzero_tool.loading.load_models` takes them."""
    from ..pipeline import SegZeroPipeline, _entry_coords
    from ..prompts import PromptFormat
    from ..reasoners.base import DEFAULT_MAX_NEW_TOKENS
    from ..registry import get_preset, resolve_model

    name = settings.reasoner if settings.reasoner is not None else get_preset(settings.preset or "default").reasoner
    entry = resolve_model(name, "reasoner")
    fmt = settings.prompt_format or entry.prompt_format
    budget = settings.max_new_tokens or entry.max_new_tokens
    coords = settings.normalised("coords")
    if coords is None and settings.prompt_format is None:
        coords = _entry_coords(settings.reasoner, settings.preset)
    pipe = SegZeroPipeline(None, None, prompt_format=fmt or PromptFormat.VISIONREASONER,
                           max_new_tokens=budget or DEFAULT_MAX_NEW_TOKENS, rounding=settings.normalised("rounding"),
                           coords=coords, compat=settings.normalised("compat") or "repair",
                           frame_size=settings.frame_size, max_objects=settings.max_objects,
                           max_pixels=settings.max_pixels)
    return StageConfig.of(pipe)


def worker_settings(settings: PipelineSettings) -> PipelineSettings:
    """The settings shipped to the workers: model folders that exist here as absolute paths (a worker's current
    folder is not the driver's), and no verifier (batch never runs the self-check loop)."""
    changes: dict[str, Any] = {name: None for name in _VERIFIER_FIELDS}
    for name in ("reasoner", "segmenter"):
        value = getattr(settings, name)
        if value and Path(value).expanduser().exists():
            changes[name] = os.fspath(Path(value).expanduser().resolve())
    return dataclasses.replace(settings, **changes)


def _pack(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(data: Any) -> Any:
    return pickle.loads(bytes(data))


# --- the stages, as Ray Data user functions (module level: pickled by reference) -----------------------------------

_DECODERS: dict[StageConfig, Any] = {}


def decode_chunk(item: dict[str, Any], *, config: StageConfig) -> dict[str, Any]:
    """Decode stage (a CPU task): a chunk of rows -> its :class:`DecodedRow` list (images in the reasoning frame,
    or error records), pickled."""
    pipe = _DECODERS.get(config)
    if pipe is None:
        pipe = _DECODERS[config] = config.pipeline(image_cache_bytes=0)
    rows: list[BatchRow] = _unpack(item["rows"])
    return {"chunk": item["chunk"], "decoded": _pack([decode_row(pipe, r) for r in rows])}


@contextlib.contextmanager
def deferred_load_error(actor: Any) -> Iterator[None]:
    """Keep a model-load error raised in an actor's constructor, for :func:`raise_load_error` to raise at its first
    call: Ray drops the cause of an actor that dies in its constructor (the driver would get an ``ActorDiedError``
    with a traceback in its text), while an error raised by a call reaches the driver as the typed exception."""
    actor.load_error = None
    try:
        yield
    except SegZeroError as exc:
        actor.load_error = exc


def raise_load_error(actor: Any) -> None:
    if getattr(actor, "load_error", None) is not None:
        raise actor.load_error


def segzero_cause(exc: BaseException) -> SegZeroError | None:
    """The typed error behind an exception that Ray raised on the driver (a ``RayTaskError`` keeps the worker's
    exception as ``cause``; Ray Data chains it), or ``None``."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(cause, SegZeroError):
            return cause
        if isinstance(e, SegZeroError) and type(e).__module__.startswith("segzero_tool"):
            return e
        stack.extend([e.__cause__, e.__context__, cause if isinstance(cause, BaseException) else None])
    return None


class ReasonStage:
    """Reason stage (an actor): loads the reasoner once, then one ``generate`` call per chunk."""

    def __init__(self, settings: PipelineSettings) -> None:
        _quiet_worker()
        with deferred_load_error(self):
            self.pipeline = settings.build_pipeline(with_segmenter=False, with_verifier=False)

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        raise_load_error(self)
        decoded = _unpack(item["decoded"])
        return {"chunk": item["chunk"], "decoded": item["decoded"], "outputs": _pack(reason_rows(self.pipeline,
                                                                                                   decoded))}


class SegmentStage:
    """Segment stage (an actor): loads the segmenter once; per chunk, :func:`finish_rows`, each record appended to
    this actor's shard file (fsync'd) and a receipt returned to the driver."""

    def __init__(self, settings: PipelineSettings, config: StageConfig, out_dir: str, png_masks: bool) -> None:
        _quiet_worker()
        only_segmenter = dataclasses.replace(settings, reasoner="none")
        with deferred_load_error(self):
            segmenter = only_segmenter.build_pipeline(with_verifier=False).segmenter
            self.pipeline = config.pipeline(None, segmenter)
        self.out_dir = out_dir
        self.png_masks = png_masks
        self.writer: Any = None  # a RecordWriter, opened at the first record: an actor that gets no work (a pool
        # still starting when the job ends) leaves no shard behind

    def records(self, decoded: Sequence[DecodedRow], outputs: Sequence[Any]) -> list[dict[str, Any]]:
        from ..eval.records import RecordWriter
        from .results_file import SHARDS_DIR

        raise_load_error(self)
        records = finish_rows(self.pipeline, decoded, outputs, out_dir=self.out_dir, png_masks=self.png_masks)
        if self.writer is None:
            shards = Path(self.out_dir) / SHARDS_DIR
            shards.mkdir(parents=True, exist_ok=True)
            self.writer = RecordWriter(shards / f"{uuid.uuid4().hex}.jsonl")
        receipts = []
        for rec in records:
            self.writer.write(rec)
            receipts.append({"id": str(rec["id"]), "index": int(rec["index"]), "status": rec["status"],
                             "_receipt": True})
        return receipts

    def __call__(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        return self.records(_unpack(item["decoded"]), _unpack(item["outputs"]))


class SegmentRowsStage(SegmentStage):
    """The segment stage after the vLLM processor (rows, in batches of ``batch_size``)."""

    def __call__(self, batch: Any) -> Any:  # type: ignore[override]
        import pandas as pd

        decoded, outputs = outputs_of_rows(batch.to_dict("records"))
        return pd.DataFrame(self.records(decoded, outputs), columns=["id", "index", "status", "_receipt"])


def init_ray(ray: Any, *, address: str | None, num_cpus: int | None, runtime_env: dict[str, Any] | None) -> bool:
    """Start Ray here (``num_cpus``: default all) or join ``address``, quietly, unless this process has Ray
    running already; ``True`` when it was started here (and should be shut down by whoever started it)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
                              "configure_logging": True}
    if address:
        kwargs["address"] = address
    elif num_cpus is not None:
        kwargs["num_cpus"] = int(num_cpus)
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    ray.init(**kwargs)
    return True


def _quiet_worker() -> None:
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _quiet_driver(ray: Any) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    if hasattr(ctx, "raise_original_map_exception"):  # the worker's typed error reaches the driver (segzero_cause)
        ctx.raise_original_map_exception = True
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.WARNING)


class RayEngine(BatchEngine):
    """Run a batch job as a Ray Data pipeline (models load on the workers, none on the driver).

    Args:
        settings: what to load and how (the reasoner, the segmenter, the pipeline settings).
        models: what the manifest records of the models (default: the settings' names, as the CLI gives them).
        address: the cluster to join (``auto``, ``ray://head:10001``); default: start Ray here (unless Ray is
            already initialised in this process, which is then used as it is).
        reasoner_actors / segmenter_actors: model copies (one actor each).
        reasoner_gpus / segmenter_gpus: GPUs per copy (``None``: 1 when the cluster has GPUs, else 0; fractions
            share a GPU).
        reasoner_cpus / segmenter_cpus: CPUs per copy (``None``: 1 with GPUs; without, what the cluster has beyond
            one decode task, shared between the copies, at most 1).
        decode_cpus: CPUs per image-decoding task.
        runtime_env: Ray runtime environment of every stage (e.g. ``{"env_vars": {"PYTHONPATH": ...}}``).
        num_cpus: CPUs of a Ray started here (default: all of this machine's).
    """

    name = "ray"

    def __init__(self, settings: PipelineSettings, *, models: dict[str, Any] | None = None, address: str | None = None,
                 reasoner_actors: int = 1, segmenter_actors: int = 1, reasoner_gpus: float | None = None,
                 segmenter_gpus: float | None = None, reasoner_cpus: float | None = None,
                 segmenter_cpus: float | None = None, decode_cpus: float = 1.0, runtime_env: dict[str, Any] | None = None,
                 num_cpus: int | None = None) -> None:
        for label, n in (("reasoner_actors", reasoner_actors), ("segmenter_actors", segmenter_actors)):
            if int(n) < 1:
                raise ValueError(f"{label} must be at least 1, got {n}")
        for label, value in (("reasoner_gpus", reasoner_gpus), ("segmenter_gpus", segmenter_gpus),
                             ("reasoner_cpus", reasoner_cpus), ("segmenter_cpus", segmenter_cpus),
                             ("decode_cpus", decode_cpus)):
            if value is not None and not 0 <= float(value) < float("inf"):
                raise ValueError(f"{label} must be a number >= 0, got {value}")
        self.settings = settings
        self._config = stage_config(settings)  # resolves the names now: a typo fails before Ray starts
        self._models = dict(models) if models is not None else None
        self.address = address
        self.reasoner_actors, self.segmenter_actors = int(reasoner_actors), int(segmenter_actors)
        self.reasoner_gpus, self.segmenter_gpus = reasoner_gpus, segmenter_gpus
        self.reasoner_cpus, self.segmenter_cpus = reasoner_cpus, segmenter_cpus
        self.decode_cpus = float(decode_cpus)
        self.runtime_env = runtime_env
        self.num_cpus = num_cpus
        self.vllm = settings.reasoner_backend.strip().lower() == "vllm"
        self._ray = import_ray()
        self._started = False

    @property
    def config(self) -> StageConfig:
        return self._config

    def models(self) -> dict[str, Any]:
        if self._models is not None:
            return dict(self._models)
        from ..cli_batch import describe_models

        return describe_models(self.settings)

    def start(self) -> Any:
        """Initialise Ray (here, or joining ``address``) unless it is already; returns the ``ray`` module."""
        ray = self._ray
        if init_ray(ray, address=self.address, num_cpus=self.num_cpus, runtime_env=self.runtime_env):
            self._started = True
        _quiet_driver(ray)
        return ray

    def resources(self) -> dict[str, dict[str, float]]:
        """The per-copy resources of each stage (``{"decode": {...}, "reasoner": {...}, "segmenter": {...}}``)."""
        ray = self.start()
        total = ray.cluster_resources()
        has_gpu = total.get("GPU", 0) > 0
        rg = self.reasoner_gpus if self.reasoner_gpus is not None else (1.0 if has_gpu else 0.0)
        sg = self.segmenter_gpus if self.segmenter_gpus is not None else (1.0 if has_gpu else 0.0)
        spare = max(0.0, float(total.get("CPU", 1)) - self.decode_cpus) / (self.reasoner_actors + self.segmenter_actors)
        share = min(1.0, spare)
        rc = self.reasoner_cpus if self.reasoner_cpus is not None else (1.0 if rg > 0 else share)
        sc = self.segmenter_cpus if self.segmenter_cpus is not None else (1.0 if sg > 0 else share)
        return {"decode": {"num_cpus": self.decode_cpus}, "reasoner": {"num_cpus": rc, "num_gpus": float(rg)},
                "segmenter": {"num_cpus": sc, "num_gpus": float(sg)}}

    def dataset(self, rows: Sequence[BatchRow], *, out_dir: str | os.PathLike, batch_size: int, png_masks: bool
                ) -> Any:
        """The Ray Data pipeline of ``rows`` (lazy: nothing runs until it is iterated); its rows are receipts."""
        ray = self.start()
        res = self.resources()
        env = {"runtime_env": self.runtime_env} if self.runtime_env else {}
        out = os.fspath(Path(out_dir).expanduser().resolve())
        wsettings = worker_settings(self.settings)
        items = [{"chunk": k, "rows": _pack(list(rows[start:start + batch_size]))}
                 for k, start in enumerate(range(0, len(rows), batch_size))]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), MAX_BLOCKS)))
        ds = ds.map(decode_chunk, fn_kwargs={"config": self._config}, **res["decode"], **env)
        segment_args = {"settings": wsettings, "config": self._config, "out_dir": out, "png_masks": png_masks}
        if self.vllm:
            ds = ds.flat_map(explode_chunk, num_cpus=0.1, **env)
            ds = vllm_processor(self.settings, self._config, actors=self.reasoner_actors, batch_size=batch_size,
                                runtime_env=self.runtime_env)(ds)
            return ds.map_batches(SegmentRowsStage, batch_size=batch_size, batch_format="pandas",
                                  fn_constructor_kwargs=segment_args,
                                  compute=ray.data.ActorPoolStrategy(size=self.segmenter_actors),
                                  **res["segmenter"], **env)
        ds = ds.map(ReasonStage, fn_constructor_kwargs={"settings": wsettings},
                    compute=ray.data.ActorPoolStrategy(size=self.reasoner_actors), **res["reasoner"], **env)
        return ds.flat_map(SegmentStage, fn_constructor_kwargs=segment_args,
                           compute=ray.data.ActorPoolStrategy(size=self.segmenter_actors), **res["segmenter"], **env)

    def run(self, rows: Sequence[BatchRow], emit: Emit, *, out_dir: str | os.PathLike, batch_size: int,
            png_masks: bool) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not rows:
            return
        ds = self.dataset(rows, out_dir=out_dir, batch_size=batch_size, png_masks=png_masks)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
                emit([{"id": str(r["id"]), "index": int(r["index"]), "status": str(r["status"]), "_receipt": True}
                      for r in batch.to_dict("records")])
        except Exception as exc:  # a model that cannot load in a worker: the same typed error as the local engine
            cause = segzero_cause(exc)
            if cause is None:
                raise
            raise cause from None

    def close(self) -> None:
        """Shut Ray down if this engine started it."""
        if self._started:
            self._ray.shutdown()
            self._started = False


# --- the vLLM path (reasoner_backend "vllm": Ray Data's LLM processor; untested here: needs vLLM and a GPU) ---------


def explode_chunk(item: dict[str, Any]) -> list[dict[str, Any]]:
    """A decoded chunk -> one row per input row for the LLM processor: the frame as a PNG ``data:`` URL (lossless),
    the prompt text and budget, and the pickled :class:`DecodedRow`. A row with an error record gets an empty frame
    (it goes through the processor as a one-token dummy request and keeps its error record)."""
    from ..reasoners.openai_wire import encode_image

    rows = []
    for pos, d in enumerate(_unpack(item["decoded"])):
        req = d.request if d.error is None else None
        rows.append({"chunk": item["chunk"], "pos": pos, "decoded": _pack(d),
                     "prompt_text": req.prompt if req is not None else "",
                     "frame_url": encode_image(req.image, "png") if req is not None else "",
                     "max_new_tokens": int(req.max_new_tokens) if req is not None else 1})
    return rows


_CARRIED = ("chunk", "pos", "decoded", "max_new_tokens")


def vllm_preprocess(row: dict[str, Any]) -> dict[str, Any]:
    """The processor's input: one user turn ``[image, text]`` with no system message (as the in-process vLLM
    backend and the reference scripts), greedy, the row's token budget."""
    if row["frame_url"]:
        content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": row["frame_url"]}},
                                         {"type": "text", "text": row["prompt_text"]}]
    else:
        content = [{"type": "text", "text": "-"}]
    return {**{k: row[k] for k in _CARRIED}, "messages": [{"role": "user", "content": content}],
            "sampling_params": {"temperature": 0.0, "max_tokens": int(row["max_new_tokens"])}}


def vllm_postprocess(row: dict[str, Any]) -> dict[str, Any]:
    """The processor's output: the generated text and its token count, with the carried columns."""
    return {**{k: row[k] for k in _CARRIED}, "generated_text": str(row.get("generated_text") or ""),
            "num_generated_tokens": int(row.get("num_generated_tokens") or 0)}


def outputs_of_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[DecodedRow], list[Any]]:
    """Processor output rows -> the :class:`DecodedRow` list and the reasoner outputs of those without an error
    (what :func:`finish_rows` takes). ``finish_reason`` is ``length`` when the budget was used up."""
    from ..reasoners.base import ReasonerOutput

    ordered = sorted(rows, key=lambda r: (int(r["chunk"]), int(r["pos"])))
    decoded = [_unpack(r["decoded"]) for r in ordered]
    outputs = []
    for r, d in zip(ordered, decoded, strict=True):
        if d.error is None:
            n = int(r["num_generated_tokens"])
            outputs.append(ReasonerOutput(str(r["generated_text"]), completion_tokens=n,
                                          finish_reason="length" if n >= int(r["max_new_tokens"]) else "stop"))
    return decoded, outputs


def vllm_engine_kwargs(config: StageConfig, settings: PipelineSettings) -> dict[str, Any]:
    """The vLLM engine arguments, as :class:`~segzero_tool.reasoners.vllm_inprocess.VLLMReasoner` builds them."""
    from ..serve import DEFAULT_MIN_PIXELS, mm_processor_kwargs, recommended_max_model_len, vllm_dtype

    return {"dtype": vllm_dtype(str(settings.dtype)), "tensor_parallel_size": 1,
            "max_model_len": recommended_max_model_len(config.max_new_tokens, config.frame_size),
            "limit_mm_per_prompt": {"image": 1},
            "mm_processor_kwargs": mm_processor_kwargs(config.frame_size, DEFAULT_MIN_PIXELS),
            "generation_config": "auto", "seed": 0}


def vllm_processor_config(settings: PipelineSettings, config: StageConfig, *, actors: int, batch_size: int,
                          runtime_env: dict[str, Any] | None = None) -> Any:
    """Ray Data's ``vLLMEngineProcessorConfig`` for the settings' reasoner (``actors`` engines, one GPU each)."""
    try:
        from ray.data.llm import vLLMEngineProcessorConfig
    except ImportError as exc:
        raise MissingDependencyError(f"reasoner_backend vllm on --engine ray needs ray.data.llm ({exc}): "
                                     'pip install "ray[data,llm]" vllm') from None
    from ..registry import get_preset, resolve_model

    name = worker_settings(settings).reasoner or get_preset(settings.preset or "default").reasoner
    kwargs: dict[str, Any] = {"model_source": resolve_model(name, "reasoner").hub_id,
                              "engine_kwargs": vllm_engine_kwargs(config, settings), "concurrency": int(actors),
                              "batch_size": int(batch_size), "prepare_multimodal_stage": {"enabled": True},
                              "chat_template_stage": {"enabled": True}, "tokenize_stage": {"enabled": True},
                              "detokenize_stage": {"enabled": True}}
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    return vLLMEngineProcessorConfig(**kwargs)


def vllm_processor(settings: PipelineSettings, config: StageConfig, *, actors: int, batch_size: int,
                   runtime_env: dict[str, Any] | None = None) -> Any:
    """The processor (a callable on a dataset of :func:`explode_chunk` rows)."""
    from ray.data.llm import build_processor

    return build_processor(vllm_processor_config(settings, config, actors=actors, batch_size=batch_size,
                                                 runtime_env=runtime_env),
                           preprocess=vllm_preprocess, postprocess=vllm_postprocess)


__all__ = ["INSTALL_HINT", "RayEngine", "ReasonStage", "SegmentRowsStage", "SegmentStage", "decode_chunk",
           "explode_chunk", "import_ray", "outputs_of_rows", "stage_config", "vllm_engine_kwargs", "vllm_postprocess",
           "vllm_preprocess", "vllm_processor", "vllm_processor_config", "worker_settings"]
