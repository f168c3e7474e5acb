"""``segzero eval --engine ray``: the samples scored on a pool of Ray actors, each holding a whole pipeline.

Each actor builds ``settings.build_pipeline(with_verifier=False)`` once and scores chunks of samples with
:func:`~segzero_tool.eval.scoring.evaluate_batch`, exactly as the in-process runner does; the records stream back to
the driver, which writes, resumes and reports as usual (:func:`~segzero_tool.eval.runner.run_evaluation` with this
executor), so the numbers are identical. The driver loads no model: the manifest's model names come from the first
actor. Dataset samples travel to the actors, so their image and mask paths must be readable on every node.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..batch.engine_ray import import_ray, stage_config, worker_settings

if TYPE_CHECKING:
    from ..pipeline import SegZeroPipeline
    from ..settings import PipelineSettings
    from .datasets import EvalSample

logger = logging.getLogger(__name__)


class EvalWorker:
    """One pipeline (reasoner and segmenter) in a Ray actor."""

    def __init__(self, settings: PipelineSettings) -> None:
        from ..batch.engine_ray import deferred_load_error

        logging.getLogger("ray").setLevel(logging.WARNING)
        with deferred_load_error(self):
            self.pipeline = settings.build_pipeline(with_verifier=False)

    def models(self) -> dict[str, Any]:
        """The ``models`` entry of the run manifest, as :func:`~segzero_tool.eval.manifest.build_manifest` writes it."""
        from ..batch.engine_ray import raise_load_error
        from .manifest import _backend_path

        raise_load_error(self)

        p, seg = self.pipeline, self.pipeline.segmenter
        return {"reasoner": getattr(p.reasoner, "model_id", None) or type(p.reasoner).__name__,
                "reasoner_backend": _backend_path(p.reasoner),
                "segmenter": (getattr(seg, "model_id", None) or type(seg).__name__) if seg is not None else None,
                "segmenter_backend": _backend_path(seg)}

    def evaluate(self, chunk: Sequence[tuple[int, EvalSample]], strip_chars: str, compat: str) -> list[dict[str, Any]]:
        from ..batch.engine_ray import raise_load_error
        from .scoring import evaluate_batch

        raise_load_error(self)
        return evaluate_batch(self.pipeline, chunk, strip_chars=strip_chars, compat=compat)  # type: ignore[arg-type]


class RayEvalExecutor:
    """Maps chunks of samples to their records on ``actors`` Ray actors (an ``executor`` for ``run_evaluation``).

    Args:
        settings: the models and pipeline settings.
        address: the cluster to join; default: start Ray here (unless already initialised in this process).
        reasoner_actors: pipelines (actors); ``segmenter_actors`` is accepted for the CLI's flags and must be 1 or
            equal (each actor holds both models).
        reasoner_gpus / segmenter_gpus: GPUs per actor are their sum (``None`` each: 1 in all when the cluster has
            GPUs, else 0).
        decode_cpus: CPUs per actor (the images are read in the actor).
        runtime_env: Ray runtime environment of the actors.
        num_cpus: CPUs of a Ray started here.
    """

    def __init__(self, settings: PipelineSettings, *, address: str | None = None, reasoner_actors: int = 1,
                 segmenter_actors: int = 1, reasoner_gpus: float | None = None, segmenter_gpus: float | None = None,
                 decode_cpus: float = 1.0, runtime_env: dict[str, Any] | None = None,
                 num_cpus: int | None = None) -> None:
        if reasoner_actors < 1:
            raise ValueError(f"reasoner_actors must be at least 1, got {reasoner_actors}")
        if segmenter_actors not in (1, reasoner_actors):
            raise ValueError("eval on Ray runs whole pipelines: set the actor count with --ray-reasoner-actors "
                             "(--ray-segmenter-actors must be 1 or the same)")
        self.settings = settings
        self.config = stage_config(settings)  # resolves the names (a typo fails before Ray starts)
        self.address, self.actors = address, int(reasoner_actors)
        self.reasoner_gpus, self.segmenter_gpus = reasoner_gpus, segmenter_gpus
        self.cpus = float(decode_cpus)
        self.runtime_env, self.num_cpus = runtime_env, num_cpus
        self._ray = import_ray()
        self._started = False
        self._pool: list[Any] = []

    def pipeline(self) -> SegZeroPipeline:
        """A pipeline without models, with the settings the records depend on (for the run manifest)."""
        return self.config.pipeline()

    def _start(self) -> list[Any]:
        from ..batch.engine_ray import init_ray

        ray = self._ray
        if init_ray(ray, address=self.address, num_cpus=self.num_cpus, runtime_env=self.runtime_env):
            self._started = True
        if not self._pool:
            has_gpu = ray.cluster_resources().get("GPU", 0) > 0
            if self.reasoner_gpus is None and self.segmenter_gpus is None:
                gpus = 1.0 if has_gpu else 0.0
            else:
                gpus = float(self.reasoner_gpus or 0) + float(self.segmenter_gpus or 0)
            options: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": gpus}
            if self.runtime_env:
                options["runtime_env"] = self.runtime_env
            cls = ray.remote(EvalWorker).options(**options)
            ws = worker_settings(self.settings)
            self._pool = [cls.remote(ws) for _ in range(self.actors)]
        return self._pool

    def models(self) -> dict[str, Any]:
        """The manifest's ``models`` entry (from the first actor: the models load there)."""
        pool = self._start()
        return self._get(pool[0].models.remote())

    def _get(self, ref: Any) -> Any:
        """``ray.get``, re-raising a worker's typed error (a model that cannot load) as itself."""
        from ..batch.engine_ray import segzero_cause

        try:
            return self._ray.get(ref)
        except Exception as exc:
            cause = segzero_cause(exc)
            if cause is None:
                raise
            raise cause from None

    def __call__(self, chunks: Iterable[Sequence[tuple[int, EvalSample]]], *, strip_chars: str, compat: str
                 ) -> Iterator[list[dict[str, Any]]]:
        """The records of each chunk, in the order the chunks finish (two chunks in flight per actor)."""
        ray = self._ray
        pool = self._start()
        pending: dict[Any, int] = {}
        free = [a for a in pool for _ in range(2)]
        it = iter(chunks)
        exhausted = False
        while True:
            while free and not exhausted:
                chunk = next(it, None)
                if chunk is None:
                    exhausted = True
                    break
                actor = free.pop()
                pending[actor.evaluate.remote(list(chunk), strip_chars, compat)] = pool.index(actor)
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1)
            free.append(pool[pending.pop(ready[0])])
            yield self._get(ready[0])

    def close(self) -> None:
        """Drop the actors, and shut Ray down if this executor started it."""
        for actor in self._pool:
            self._ray.kill(actor)
        self._pool = []
        if self._started:
            self._ray.shutdown()
            self._started = False


__all__ = ["EvalWorker", "RayEvalExecutor"]
