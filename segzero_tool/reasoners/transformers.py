"""Reasoner backend on Hugging Face transformers: Qwen2-VL, Qwen2.5-VL and Qwen3-VL checkpoints, greedy decoding.

Loading follows the reference scripts (``AutoProcessor`` with left padding, the model in eval mode);
generation follows them too: one user turn ``[image, text]`` with no system message (the chat
template's default "You are a helpful assistant." applies), ``add_generation_prompt=True``, greedy,
``use_cache=True``, batches left-padded.

Qwen3-VL (model type ``qwen3_vl``) loads through the same ``AutoModelForImageTextToText`` /
``AutoProcessor`` path (``Qwen3VLForConditionalGeneration`` and ``Qwen3VLProcessor``); its chat template
has no default system prompt, and its image processor works in 32-pixel steps (16-pixel patches merged
2x2), which the pipeline's aspect-preserving frames for the ``qwen3vl`` format already are.

torch and transformers are imported inside the methods, so importing this module is cheap.

Example:
    >>> reasoner = TransformersReasoner.from_pretrained("Ricky06662/VisionReasoner-7B")  # doctest: +SKIP
    >>> [out] = reasoner.generate([ReasonerRequest(image=frame_840, prompt=text)])  # doctest: +SKIP
    >>> out.text, out.finish_reason  # doctest: +SKIP
    ('<think>...</think><answer>[...]</answer>', 'stop')
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..cancel import check_cancelled, current_token
from ..devices import resolve_device, resolve_dtype
from ..errors import MissingDependencyError, ModelLoadError
from ..hub import check_hub_access, files_only, local_folder, progress_bars
from ..progress import current_sink, report
from .base import Reasoner, ReasonerOutput, ReasonerRequest

logger = logging.getLogger(__name__)

_INSTALL_HINT = "pip install segzero-tool (it brings torch, torchvision and transformers)"


class TransformersReasoner(Reasoner):
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL reasoner running in-process with transformers.

    Attributes:
        model: the ``*ForConditionalGeneration`` model, in eval mode (``None`` after :meth:`close`).
        processor: its ``AutoProcessor`` (tokenizer padding on the left).
        device: ``torch.device`` the model runs on.
        dtype: ``torch.dtype`` of the weights.
        max_batch_size: at most this many requests go through ``model.generate`` at once.
    """

    name = "transformers"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        model_id: str | None = None,
        max_batch_size: int = 8,
    ) -> None:
        """Wrap an already loaded model and processor (see :meth:`from_pretrained` to load one).

        Args:
            model: a Qwen2-VL / Qwen2.5-VL / Qwen3-VL ``*ForConditionalGeneration`` (put in eval mode here).
            processor: the matching processor; its tokenizer is switched to left padding.
            model_id: hub id or folder, for results and logs.
            max_batch_size: chunk size of batched generation (>= 1).

        Raises:
            ValueError: ``max_batch_size`` is below 1.
        """
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model = model.eval()
        self.processor = processor
        self.processor.tokenizer.padding_side = "left"  # batched greedy decoding needs left padding
        self.model_id = model_id
        self.max_batch_size = int(max_batch_size)
        self.device = model.device
        self.dtype = model.dtype
        self._eos_ids = _eos_token_ids(model, processor)
        self._lock = threading.Lock()
        pad_id = model.generation_config.pad_token_id
        self._pad_id = processor.tokenizer.pad_token_id if pad_id is None else pad_id

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | os.PathLike[str],
        *,
        device: str | None = "auto",
        dtype: Any = "auto",
        attn_implementation: str = "auto",
        max_batch_size: int = 8,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        revision: str | None = None,
        local_files_only: bool | None = None,
        trust_remote_code: bool = False,
        progress: bool = True,
    ) -> TransformersReasoner:
        """Load a checkpoint from a local folder or the Hugging Face Hub.

        Args:
            model_id_or_path: hub id (``"owner/name"``) or local folder.
            device: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
            dtype: ``auto`` (bfloat16 on CUDA, float32 elsewhere), ``bf16``, ``fp16``, ``fp32`` or a
                ``torch.dtype``.
            attn_implementation: ``auto`` picks ``flash_attention_2`` when the ``flash_attn``
                package is importable, the device is CUDA and the dtype is bf16/fp16, else ``sdpa``
                (and ``eager`` if the model cannot load with ``sdpa``); any other value is passed on.
            max_batch_size: chunk size of batched generation.
            min_pixels: lower bound on pixels per image for the image processor (``None``: the
                checkpoint's). The reasoning frames (840x840; for Qwen3-VL aspect-preserving frames of
                at least 65,536 pixels) already lie inside Qwen's defaults.
            max_pixels: upper bound on pixels per image (``None``: the checkpoint's).
            revision: hub branch, tag or commit.
            local_files_only: ``True`` never touches the network; ``None`` follows transformers'
                default (``HF_HUB_OFFLINE``).
            trust_remote_code: allow custom code from the checkpoint.
            progress: show download / loading progress bars; ``False`` hides them while loading.

        Returns:
            The loaded reasoner.

        Raises:
            DeviceError: the device is not available.
            ModelLoadError: the folder does not exist, the id cannot be fetched, or the files are
                not a loadable image-text-to-text checkpoint.
            MissingDependencyError: torch / transformers (or ``flash_attn`` when asked for) is
                missing.
        """
        source = _check_source(model_id_or_path)
        # a hub id with the hub unreachable: the cached copy, or one clear error in seconds (before torch loads)
        local_files_only = check_hub_access(source, what="reasoner", revision=revision,
                                            local_files_only=local_files_only)
        _require("torch", "transformers")
        device_str = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device_str)
        attn = _pick_attention(attn_implementation, device_str, torch_dtype)
        dtype_name = str(torch_dtype).removeprefix("torch.")
        logger.info("loading reasoner %s on %s (%s, attention %s)...", source, device_str, dtype_name, attn)

        hub_kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        if local_files_only is not None:
            hub_kwargs["local_files_only"] = local_files_only
        pixel_kwargs = {
            key: value
            for key, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels))
            if value is not None
        }
        with progress_bars(progress), files_only(local_files_only), _load_errors(source):
            processor = _load_processor(source, hub_kwargs, pixel_kwargs)
            model = _load_model(source, hub_kwargs, device_str, torch_dtype, attn, attn_implementation)
        logger.info("reasoner %s ready (%s)", source, type(model).__name__)
        return cls(model, processor, model_id=source, max_batch_size=max_batch_size)

    def generate(self, requests: Sequence[ReasonerRequest]) -> list[ReasonerOutput]:
        """Generate greedily for every request, in chunks of :attr:`max_batch_size`.

        Each chunk runs one ``model.generate`` call with ``max_new_tokens`` set to the **largest**
        budget in the chunk; every output is then cut to its own request's budget. Greedy decoding
        makes the cut output equal to what a call with that budget alone would produce, so mixed
        budgets only cost compute, never correctness. The checkpoint's temperature / top_p / top_k
        are unset (greedy ignores them); other settings of its ``generation_config`` (e.g. a
        ``repetition_penalty``) stay active, as in the reference scripts' ``generate`` calls.

        Args:
            requests: images (already in the reasoning frame, RGB) and prompt texts.

        Returns:
            One :class:`ReasonerOutput` per request, in order: ``text`` (new tokens only, special
            tokens removed), ``prompt_tokens`` (text + visual tokens, padding excluded),
            ``completion_tokens`` (including the end-of-sequence token when one was produced) and
            ``finish_reason`` (``"stop"`` at an end-of-sequence token, ``"length"`` when the budget
            ran out first: the answer may be truncated).

        Raises:
            RuntimeError: the reasoner was closed.
        """
        if self.model is None:
            raise RuntimeError("this TransformersReasoner was closed; load a new one with from_pretrained()")
        requests = list(requests)
        outputs: list[ReasonerOutput] = []
        starts = range(0, len(requests), self.max_batch_size)
        if len(starts) > 1:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="reasoning", unit="batch")
        with self._lock:  # one generate at a time per model: callers may come from several threads
            for start in starts:
                check_cancelled()
                outputs.extend(self._generate_chunk(requests[start : start + self.max_batch_size]))
        return outputs

    def _generate_chunk(self, requests: list[ReasonerRequest]) -> list[ReasonerOutput]:
        """One left-padded ``model.generate`` call for ``len(requests) <= max_batch_size`` requests."""
        import torch

        texts = [
            self.processor.apply_chat_template(
                [
                    {
                        "role": "user",
                        "content": [{"type": "image", "image": r.image}, {"type": "text", "text": r.prompt}],
                    }
                ],
                tokenize=False,
                add_generation_prompt=True,
            )
            for r in requests
        ]
        inputs = self.processor(
            text=texts, images=[r.image for r in requests], padding=True, return_tensors="pt"
        ).to(self.device)
        budgets = [int(r.max_new_tokens) for r in requests]
        with torch.inference_mode():
            sequences = self.model.generate(
                **inputs,
                max_new_tokens=max(budgets),
                do_sample=False,
                # The Instruct checkpoints ship sampling settings; unset them so greedy runs quietly.
                temperature=None,
                top_p=None,
                top_k=None,
                use_cache=True,
                eos_token_id=self._eos_ids,
                pad_token_id=self._pad_id,
                stopping_criteria=_stopping_criteria(max(budgets), inputs["input_ids"].shape[1]),
            )
        check_cancelled()  # a cancelled generate stops early; its partial text is not an answer
        new_tokens = sequences[:, inputs["input_ids"].shape[1] :].tolist()  # (batch, new) ints
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()  # (batch,)
        return [
            self._to_output(row, budget, int(prompt_len))
            for row, budget, prompt_len in zip(new_tokens, budgets, prompt_lengths, strict=True)
        ]

    def _to_output(self, row: list[int], budget: int, prompt_len: int) -> ReasonerOutput:
        """Cut one row of new token ids at its first EOS (or its budget) and decode it."""
        row = row[:budget]
        stop_at = next((i for i, token in enumerate(row) if token in self._eos_ids), None)
        if stop_at is None:
            text_ids, count, finish = row, len(row), "length"
        else:  # the EOS token counts as generated but is never part of the text
            text_ids, count, finish = row[:stop_at], stop_at + 1, "stop"
        text = self.processor.tokenizer.decode(text_ids, skip_special_tokens=True)
        return ReasonerOutput(
            text=text, prompt_tokens=prompt_len, completion_tokens=count, finish_reason=finish
        )

    def close(self) -> None:
        """Drop the model (and empty the CUDA cache when it was on a GPU). Safe to call twice."""
        if self.model is None:
            return
        on_cuda = getattr(self.device, "type", str(self.device)) == "cuda"
        self.model = None
        gc.collect()
        if on_cuda:
            import torch

            torch.cuda.empty_cache()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_id={self.model_id!r}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype)!r}, max_batch_size={self.max_batch_size})"
        )


def _require(*modules: str) -> None:
    """Raise :class:`MissingDependencyError` naming the first module that cannot be imported."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingDependencyError(
                f"the transformers reasoner needs {module!r}, which is not installed: {_INSTALL_HINT}"
            ) from exc


def _check_source(model_id_or_path: str | os.PathLike[str]) -> str:
    """Return the id or folder as a string; fail early on a path that is not a folder.

    Raises:
        ModelLoadError: the path does not exist or is a file.
    """
    folder = local_folder(
        model_id_or_path,
        what="reasoner",
        file_hint="pass the checkpoint folder (the one holding config.json) or a Hugging Face Hub id",
        example_id="Ricky06662/VisionReasoner-7B",
    )
    return folder if folder is not None else os.fspath(model_id_or_path)


def _pick_attention(requested: str, device: str, dtype: Any) -> str:
    """Resolve ``attn_implementation="auto"``: flash-attention 2 only where it can run."""
    import importlib.util

    import torch

    if requested != "auto":
        return requested
    half = dtype in (torch.bfloat16, torch.float16)
    if device.startswith("cuda") and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _load_processor(source: str, hub_kwargs: dict[str, Any], pixel_kwargs: dict[str, int]) -> Any:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(source, padding_side="left", **hub_kwargs)
    if pixel_kwargs:
        # transformers 5 reads the pixel budget from ``size`` (min/max_pixels as processor arguments
        # are deprecated and warn on every call).
        image_processor = processor.image_processor
        size = dict(image_processor.size or {})
        if "min_pixels" in pixel_kwargs:
            size["shortest_edge"] = pixel_kwargs["min_pixels"]
        if "max_pixels" in pixel_kwargs:
            size["longest_edge"] = pixel_kwargs["max_pixels"]
        image_processor.size = {k: v for k, v in size.items() if v is not None}
    return processor


def _load_model(
    source: str, hub_kwargs: dict[str, Any], device: str, dtype: Any, attn: str, requested: str
) -> Any:
    """Load the model straight onto ``device``; retry with eager attention when auto-picked sdpa fails."""
    from transformers import AutoModelForImageTextToText

    def load(implementation: str) -> Any:
        return AutoModelForImageTextToText.from_pretrained(
            source, dtype=dtype, device_map=device, attn_implementation=implementation, **hub_kwargs
        )

    try:
        model = load(attn)
    except (ValueError, ImportError) as exc:
        if not (requested == "auto" and attn == "sdpa"):
            raise
        logger.warning("sdpa attention is not available for %s (%s); using eager attention", source, exc)
        model = load("eager")
    return model.eval()


@contextlib.contextmanager
def _load_errors(source: str) -> Iterator[None]:
    """Turn loading failures into :class:`ModelLoadError` / :class:`MissingDependencyError`."""
    try:
        yield
    except ImportError as exc:
        raise MissingDependencyError(
            f"loading reasoner {source!r} needs a package that is not installed: {exc}. "
            "For flash attention: pip install 'segzero-tool[flash]', or pass attn_implementation='sdpa'"
        ) from exc
    except (OSError, ValueError) as exc:
        where = "folder" if os.path.isdir(source) else "Hugging Face Hub id"
        raise ModelLoadError(
            f"could not load reasoner {source!r} ({where}): {exc}\n"
            "No internet? Download the checkpoint elsewhere (`hf download ID`) and pass the local "
            "folder, or set HF_HUB_OFFLINE=1 to use the cache. A folder must hold config.json, the weights "
            "and the processor files of a Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint."
        ) from exc


def _stopping_criteria(budget: int, prompt_width: int) -> Any:
    """``StoppingCriteria`` for the current call: stop when it is cancelled, and report tokens generated
    against the budget to the current progress sink (see :mod:`segzero_tool.progress`). ``None`` when
    the call has neither a cancel token nor a progress sink."""
    token = current_token()
    sink = current_sink()
    if token is None and sink is None:
        return None
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Watch(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if sink is not None:
                done = int(input_ids.shape[1]) - prompt_width
                report("reasoning", f"generated {done}/{budget} tokens", done, budget)
            cancelled = token is not None and token.cancelled
            return torch.full((input_ids.shape[0],), cancelled, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Watch()])


def _eos_token_ids(model: Any, processor: Any) -> list[int]:
    """End-of-sequence ids: the model's generation config (Qwen: ``<|im_end|>``, ``<|endoftext|>``)."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = processor.tokenizer.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if not ids:
        raise ModelLoadError(
            "the checkpoint defines no end-of-sequence token (generation_config.eos_token_id)"
        )
    return ids
