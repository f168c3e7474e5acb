"""Periodic evaluation during training: ``--eval-dataset ... --eval-steps N`` runs the evaluation harness on the
current weights and logs gIoU / cIoU (``make_eval_callback``); ``--eval-segmenter box`` uses :class:`BoxSegmenter`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .config import Recipe

logger = logging.getLogger("segzero_tool.training")

__all__ = ["BoxSegmenter", "make_eval_callback"]


class BoxSegmenter:
    """Cheap evaluation segmenter: each object's mask is its box (``--eval-segmenter box``)."""

    def __new__(cls) -> Any:
        import numpy as np

        from segzero_tool.segmenters.base import Segmenter, SegmenterOutput

        class BoxSegmenter(Segmenter):
            name = "box"

            def segment(self, image: Any, prompts: Any) -> Any:
                h, w = image.shape[:2]
                masks = np.zeros((len(prompts), h, w), dtype=bool)
                for i, prompt in enumerate(prompts):
                    if prompt.box is not None:
                        x1, y1, x2, y2 = (int(round(v)) for v in prompt.box)
                        masks[i, max(y1, 0) : max(y2 + 1, 0), max(x1, 0) : max(x2 + 1, 0)] = True
                return SegmenterOutput(masks=masks, scores=np.ones(len(prompts), dtype=np.float32))

        return BoxSegmenter()


def make_eval_callback(trainer: Any, recipe: Recipe, processor: Any) -> Any:
    """A ``TrainerCallback`` that runs ``segzero_tool.eval.run_evaluation`` every ``recipe.eval_steps`` steps
    on the current weights (rank 0 only; skipped under DeepSpeed ZeRO-3, whose weights are sharded).

    Scores go into the step's logs as ``eval/giou`` and ``eval/ciou`` (``trainer_state.json``'s log history;
    TensorBoard and W&B show them as ``train/eval/giou``, ``train/eval/ciou``: transformers prefixes every
    training-log key with ``train/``); run folders into ``output_dir/eval/step-N``.
    """
    from transformers import TrainerCallback

    class PeriodicEvalCallback(TrainerCallback):
        def __init__(self) -> None:
            self.pending: dict[str, float] = {}
            self.dataset: Any = None
            self.segmenter: Any = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step % recipe.eval_steps or not state.is_world_process_zero:
                return control
            ds_plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
            if ds_plugin is not None and getattr(ds_plugin, "zero_stage", 0) == 3:
                logger.warning("periodic evaluation skipped under ZeRO-3: evaluate a checkpoint folder instead")
                return control
            self.pending = self.evaluate(state.global_step)
            control.should_log = True
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> Any:
            if self.pending and logs is not None:
                logs.update(self.pending)
                if state.log_history:
                    state.log_history[-1].update(self.pending)
                self.pending = {}
            return control

        def evaluate(self, step: int) -> dict[str, float]:
            from segzero_tool.eval import load_eval_dataset, run_evaluation
            from segzero_tool.pipeline import SegZeroPipeline
            from segzero_tool.reasoners.transformers import TransformersReasoner

            if self.dataset is None:
                self.dataset = load_eval_dataset(recipe.eval_dataset, split=recipe.eval_split)
            model = trainer.accelerator.unwrap_model(trainer.model)
            was_training = model.training
            fmt = "segzero" if recipe.rewards.startswith("segzero") else "visionreasoner"
            reasoner = TransformersReasoner(model, processor, model_id=f"step-{step}",
                                            max_batch_size=recipe.eval_batch_size)
            if self.segmenter is None and recipe.eval_segmenter == "box":
                self.segmenter = BoxSegmenter()
            segmenter = self.segmenter or recipe.eval_segmenter
            try:
                pipe = SegZeroPipeline.from_pretrained(
                    reasoner, segmenter, prompt_format=fmt, device=str(model.device),
                    max_new_tokens=recipe.max_completion_length, rounding="segzero" if fmt == "segzero" else None)
                self.segmenter = pipe.segmenter
                result = run_evaluation(pipe, self.dataset, Path(recipe.output_dir) / "eval" / f"step-{step}",
                                        limit=recipe.eval_limit, batch_size=recipe.eval_batch_size,
                                        progress=False, worst=0)
            finally:
                model.train(was_training)
            overall = result.summary["overall"]
            logger.info("step %d evaluation: gIoU %.4f cIoU %.4f", step, overall["giou"], overall["ciou"])
            return {"eval/giou": float(overall["giou"]), "eval/ciou": float(overall["ciou"])}

    return PeriodicEvalCallback()
