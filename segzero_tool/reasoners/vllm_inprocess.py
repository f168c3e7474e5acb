"""Reasoner backend on vLLM in-process (``vllm.LLM``): batched generation on CUDA GPUs.

Install with ``pip install "segzero-tool[vllm]"`` (vLLM >= 0.12, Linux with a CUDA GPU). The engine
is built the way ``segzero serve-reasoner`` builds the server (:mod:`segzero_tool.serve`): one
image per prompt, Qwen2.5-VL's ``max_pixels`` capped at the reasoning frame, ``bfloat16``, the
checkpoint's generation config, a context length sized for 900 visual tokens + prompt + budget.
Generation follows the reference scripts: one user turn ``[image, text]`` with no system message,
greedy (``temperature=0``) with the request's token budget; the checkpoint's penalties
(``repetition_penalty``) are kept, as ``model.generate(do_sample=False)`` keeps them; optional
structured outputs (:mod:`.structured`) force the answer shape. ``generate`` hands every request to
one ``LLM.chat`` call, which batches them (continuous batching).

Facts checked against vLLM main (2026-11; vllm/entrypoints/llm.py @10fdb8f, vllm/sampling_params.py
@00388f6, vllm/config/multimodal.py): ``LLM(model, tensor_parallel_size=, dtype=,
gpu_memory_utilization=, max_model_len=, limit_mm_per_prompt=, mm_processor_kwargs=,
generation_config=, mm_encoder_tp_mode=, seed=)``; ``LLM(data_parallel_size>1)`` raises in a single
process (vLLM asks for its multi-process data-parallel example), so several GPUs as copies means
``segzero serve-reasoner --data-parallel N`` and the ``openai`` backend;
``SamplingParams(temperature=, max_tokens=, structured_outputs=StructuredOutputsParams(regex=...))``;
``LLM.chat(list_of_conversations, sampling_params=list, use_tqdm=False)`` with content parts
``{"type": "image_pil", "image_pil": PIL.Image}``; ``LLM.get_default_sampling_params()`` holds the
checkpoint's generation-config defaults.

``vllm`` is imported inside :meth:`VLLMReasoner.from_pretrained`, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, Literal

from ..cancel import check_cancelled
from ..errors import DeviceError, MissingDependencyError, ModelLoadError
from .base import DEFAULT_MAX_NEW_TOKENS, Reasoner, ReasonerOutput, ReasonerRequest
from .structured import AnswerSchema, schema_for_prompt

logger = logging.getLogger(__name__)

INSTALL_HINT = ('pip install "segzero-tool[vllm]" (vLLM >= 0.12, Linux with a CUDA GPU); or run the model '
                "with `segzero serve-reasoner` on a GPU machine and use --reasoner-backend openai")

#: Sampling defaults taken from the checkpoint's generation config (the rest is ours: greedy).
_KEPT_DEFAULTS = ("repetition_penalty", "presence_penalty", "frequency_penalty")


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise MissingDependencyError(f"the vllm reasoner backend needs vLLM, which is not installed: {INSTALL_HINT}") from exc
    return vllm


class VLLMReasoner(Reasoner):
    """Qwen2-VL / Qwen2.5-VL reasoner running in this process on vLLM.

    Args:
        llm: a ``vllm.LLM``.
        model_id: hub id or folder, for results and logs.
        structured_outputs: ``auto`` / ``regex`` (default: force the answer shape with a regex),
            ``grammar`` or ``off``.
        answer_schema: ``auto`` (from the prompt: Seg-Zero prompts get the single object, qwen3vl
            prompts the bare list), ``list``, ``single`` or ``json``.
        max_objects: bound the object count in the regex (``None``: unbounded).
    """

    name = "vllm"

    def __init__(
        self,
        llm: Any,
        *,
        model_id: str | None = None,
        structured_outputs: str | bool | None = "auto",
        answer_schema: Literal["auto", "list", "single", "json"] = "auto",
        max_objects: int | None = None,
    ) -> None:
        mode = "off" if structured_outputs in (None, False) else "regex" if structured_outputs is True else str(structured_outputs).lower()
        if mode not in ("auto", "regex", "grammar", "off"):
            raise ValueError(f"structured_outputs must be auto, regex, grammar or off, got {structured_outputs!r}")
        if answer_schema not in ("auto", "list", "single", "json"):
            raise ValueError(f"answer_schema must be auto, list, single or json, got {answer_schema!r}")
        self.llm = llm
        self.model_id = model_id
        self.structured_outputs = "regex" if mode == "auto" else mode
        self.answer_schema = answer_schema
        self.max_objects = max_objects
        self._lock = threading.Lock()
        try:
            defaults = llm.get_default_sampling_params()
        except AttributeError:  # pragma: no cover - very old vLLM
            defaults = None
        self._defaults = {k: getattr(defaults, k) for k in _KEPT_DEFAULTS if defaults is not None and hasattr(defaults, k)}

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | os.PathLike[str],
        *,
        device: str | None = "auto",
        dtype: Any = "auto",
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        max_new_tokens: int | None = None,
        frame_size: int = 840,
        min_pixels: int | None = None,
        structured_outputs: str | bool | None = "auto",
        answer_schema: Literal["auto", "list", "single", "json"] = "auto",
        max_objects: int | None = None,
        seed: int = 0,
        revision: str | None = None,
        trust_remote_code: bool = False,
        **llm_kwargs: Any,
    ) -> VLLMReasoner:
        """Build the ``vllm.LLM`` engine.

        Args:
            model_id_or_path: hub id or local folder.
            device: ``auto`` / ``cuda`` (vLLM uses the GPUs in ``CUDA_VISIBLE_DEVICES``).
            dtype: ``auto`` (the checkpoint's: ``bfloat16`` for Qwen2.5-VL), ``bf16``, ``fp16``, ``fp32``,
                or a ``torch.dtype``.
            tensor_parallel_size: GPUs per engine (the vision encoder then runs data-parallel).
            data_parallel_size: must be 1 in-process (vLLM refuses more in one process); serve the
                model with ``segzero serve-reasoner --data-parallel N`` instead.
            gpu_memory_utilization: share of each GPU vLLM may take.
            max_model_len: context length (default: 900 visual tokens + 768 + budget, rounded up to 1024).
            max_new_tokens: the budget used for the default ``max_model_len`` (default: the registry's).
            frame_size: reasoning frame side (caps ``max_pixels`` at ``frame_size**2``).
            min_pixels: processor lower bound (default 3136, Qwen's).
            structured_outputs / answer_schema / max_objects: see the class.
            seed, revision, trust_remote_code: passed to ``vllm.LLM``.
            **llm_kwargs: any other ``vllm.LLM`` / engine argument (``enforce_eager=True``, ...).

        Raises:
            MissingDependencyError: vLLM is not installed.
            DeviceError: a device other than ``auto`` / ``cuda``.
            ValueError: ``data_parallel_size`` > 1.
            ModelLoadError: vLLM could not load the checkpoint.
        """
        from ..serve import DEFAULT_MIN_PIXELS, mm_processor_kwargs, recommended_max_model_len, vllm_dtype

        dev = "auto" if device is None else str(device).strip().lower()
        if dev not in ("auto", "cuda"):
            hint = f" (select GPU {dev[5:]} with CUDA_VISIBLE_DEVICES={dev[5:]})" if dev.startswith("cuda:") else ""
            raise DeviceError(f"the vllm reasoner runs on CUDA GPUs; device={device!r} is not supported{hint}")
        if int(data_parallel_size) > 1:
            raise ValueError(
                f"data_parallel_size={data_parallel_size}: vLLM runs data parallelism in one process only with its "
                "multi-process launcher; serve the model with `segzero serve-reasoner --data-parallel "
                f"{data_parallel_size}` and use reasoner_backend='openai', or use tensor_parallel_size"
            )
        vllm = _import_vllm()
        source = os.fspath(model_id_or_path)
        if max_new_tokens is None:
            max_new_tokens = _registry_budget(source)
        kwargs: dict[str, Any] = {
            "dtype": vllm_dtype(str(dtype)),
            "tensor_parallel_size": int(tensor_parallel_size),
            "gpu_memory_utilization": float(gpu_memory_utilization),
            "max_model_len": int(max_model_len or recommended_max_model_len(max_new_tokens, frame_size)),
            "limit_mm_per_prompt": {"image": 1},
            "mm_processor_kwargs": mm_processor_kwargs(frame_size, DEFAULT_MIN_PIXELS if min_pixels is None else min_pixels),
            "generation_config": "auto",
            "seed": seed,
            "trust_remote_code": trust_remote_code,
        }
        if revision is not None:
            kwargs["revision"] = revision
        if int(tensor_parallel_size) > 1:
            kwargs["mm_encoder_tp_mode"] = "data"
        kwargs.update(llm_kwargs)
        logger.info("loading reasoner %s with vLLM (%s)", source, ", ".join(f"{k}={v}" for k, v in kwargs.items()))
        try:
            llm = vllm.LLM(model=source, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"vLLM could not load reasoner {source!r}: {exc}") from exc
        return cls(llm, model_id=source, structured_outputs=structured_outputs, answer_schema=answer_schema,
                   max_objects=max_objects)

    def sampling_params(self, request: ReasonerRequest) -> Any:
        """``vllm.SamplingParams`` for one request: greedy, its budget, the checkpoint's penalties,
        and the structured-output constraint."""
        from vllm import SamplingParams

        kwargs: dict[str, Any] = {**self._defaults, "temperature": 0.0, "max_tokens": int(request.max_new_tokens)}
        if self.structured_outputs != "off" and request.structured:
            from vllm.sampling_params import StructuredOutputsParams

            from .structured import answer_grammar, answer_regex

            schema: AnswerSchema = (schema_for_prompt(request.prompt) if self.answer_schema == "auto"
                                    else self.answer_schema)  # type: ignore[assignment]
            if self.structured_outputs == "grammar":
                kwargs["structured_outputs"] = StructuredOutputsParams(grammar=answer_grammar(schema))
            else:
                kwargs["structured_outputs"] = StructuredOutputsParams(regex=answer_regex(schema, self.max_objects))
        return SamplingParams(**kwargs)

    @staticmethod
    def conversation(request: ReasonerRequest) -> list[dict[str, Any]]:
        """One user turn ``[image, text]``, no system message (the chat template's default applies)."""
        return [{
            "role": "user",
            "content": [
                {"type": "image_pil", "image_pil": request.image},
                {"type": "text", "text": request.prompt},
            ],
        }]

    def generate(self, requests: Sequence[ReasonerRequest]) -> list[ReasonerOutput]:
        """All requests in one ``LLM.chat`` call (vLLM batches them).

        Raises:
            RuntimeError: the reasoner was closed.
        """
        if self.llm is None:
            raise RuntimeError("this VLLMReasoner was closed; load a new one with from_pretrained()")
        requests = list(requests)
        if not requests:
            return []
        check_cancelled()
        conversations = [self.conversation(r) for r in requests]
        params = [self.sampling_params(r) for r in requests]
        with self._lock:  # one LLM.chat at a time: the engine is not re-entrant
            results = self.llm.chat(conversations, sampling_params=params, use_tqdm=len(requests) > 8)
        check_cancelled()
        if len(results) != len(requests):
            raise RuntimeError(f"vLLM returned {len(results)} outputs for {len(requests)} requests")
        outputs = []
        for result in results:
            completion = result.outputs[0]
            prompt_ids = getattr(result, "prompt_token_ids", None)
            token_ids = getattr(completion, "token_ids", None)
            outputs.append(ReasonerOutput(
                text=completion.text,
                prompt_tokens=len(prompt_ids) if prompt_ids is not None else None,
                completion_tokens=len(token_ids) if token_ids is not None else None,
                finish_reason=getattr(completion, "finish_reason", None),
            ))
        return outputs

    def close(self) -> None:
        """Drop the engine. Safe to call twice."""
        if self.llm is None:
            return
        self.llm = None
        import gc

        gc.collect()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model_id={self.model_id!r}, structured_outputs={self.structured_outputs!r}, "
                f"answer_schema={self.answer_schema!r})")


def _registry_budget(source: str) -> int:
    """The registry's token budget for a hub id / name, else the default 2048."""
    from ..registry import MODELS

    key = source.strip().lower()
    entry = MODELS.get(key) or next((e for e in MODELS.values() if e.hub_id.lower() == key), None)
    return (entry.max_new_tokens if entry is not None else None) or DEFAULT_MAX_NEW_TOKENS


__all__ = ["INSTALL_HINT", "VLLMReasoner"]
