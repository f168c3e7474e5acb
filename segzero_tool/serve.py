"""``segzero serve-reasoner``: the recommended ``vllm serve`` command for a registry model.

For ``visionreasoner-7b`` on one GPU::

    vllm serve Ricky06662/VisionReasoner-7B --served-model-name visionreasoner-7b Ricky06662/VisionReasoner-7B \\
        --host 127.0.0.1 --port 8000 --dtype bfloat16 --max-model-len 4096 \\
        --limit-mm-per-prompt '{"image": 1}' --mm-processor-kwargs '{"min_pixels": 3136, "max_pixels": 705600}' \\
        --generation-config auto --gpu-memory-utilization 0.9

Why each flag (vLLM >= 0.12; flags checked against vLLM's engine arguments on main, 2026):

* ``--served-model-name SHORT HUB_ID``: the registry short name first (the name the ``openai``
  backend asks for and vLLM puts in responses), the hub id as an alias.
* ``--limit-mm-per-prompt '{"image": 1}'``: one image per request (our requests carry exactly one);
  vLLM sizes its encoder cache and memory profile for this many.
* ``--mm-processor-kwargs '{"min_pixels": 3136, "max_pixels": F*F}'``: Qwen2.5-VL's processor budget
  capped at the reasoning frame (840x840 = 705,600 pixels = 900 visual tokens); without it vLLM
  reserves memory for 16k-token images. The frame itself is never resized (840 = 30 x 28).
* ``--max-model-len``: 900 visual tokens + :data:`TEXT_TOKENS_ALLOWANCE` for the chat template,
  prompt and a long query + the model's token budget (2048 for VisionReasoner, 1024 for Seg-Zero),
  rounded up to a multiple of 1024: 4096 for VisionReasoner, 3072 for Seg-Zero.
* ``--dtype bfloat16``: the checkpoints' dtype, as the reference scripts load them.
* ``--generation-config auto``: vLLM's current default (older releases defaulted to none), spelled out: the checkpoint's
  ``generation_config.json`` supplies default sampling parameters. Requests set ``temperature: 0``
  (greedy), so what remains is the checkpoint's ``repetition_penalty`` (1.05 for Qwen2.5-VL), which
  the reference ``model.generate(do_sample=False)`` applies as well. ``--generation-config vllm``
  would drop it and drift from the reference outputs.
* ``--tensor-parallel-size N`` (N > 1) with ``--mm-encoder-tp-mode data``: the vision encoder runs
  data-parallel across the TP ranks (recommended for Qwen2.5-VL-7B); ``--data-parallel-size N``
  (N > 1): N engine copies behind one endpoint.
* ``--host 127.0.0.1`` by default: pass ``--host 0.0.0.0`` to serve other machines, and set
  ``VLLM_API_KEY`` on the server (clients read it from ``--reasoner-api-key-env``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Sequence

from .errors import MissingDependencyError
from .reasoners.base import DEFAULT_MAX_NEW_TOKENS

#: Qwen2.5-VL: one visual token per 28 x 28 pixels.
PIXELS_PER_TOKEN_SIDE = 28
#: Qwen2.5-VL's default lower pixel bound (56 x 56).
DEFAULT_MIN_PIXELS = 3136
#: Tokens kept for the chat template (~20), the prompt template (~250) and a long query (~500).
TEXT_TOKENS_ALLOWANCE = 768

_DTYPES = {"auto": "auto", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
           "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32"}

_INSTALL_HINT = 'pip install "segzero-tool[vllm]" (Linux with a CUDA GPU)'


def visual_tokens(frame_size: int = 840) -> int:
    """Visual tokens of a ``frame_size`` x ``frame_size`` image for Qwen2.5-VL (900 for 840)."""
    side = -(-int(frame_size) // PIXELS_PER_TOKEN_SIDE)
    return side * side


def recommended_max_model_len(max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, frame_size: int = 840) -> int:
    """Context length for one request: visual tokens + text allowance + budget, rounded up to 1024."""
    need = visual_tokens(frame_size) + TEXT_TOKENS_ALLOWANCE + int(max_new_tokens)
    return -(-need // 1024) * 1024


def vllm_dtype(dtype: str | None) -> str:
    """Our dtype names (``bf16``, ``fp16``, ``fp32``, ``auto``) as vLLM's."""
    key = "auto" if dtype is None else str(dtype).strip().lower().removeprefix("torch.")
    try:
        return _DTYPES[key]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bf16, fp16 or fp32") from None


def mm_processor_kwargs(frame_size: int = 840, min_pixels: int = DEFAULT_MIN_PIXELS) -> dict[str, int]:
    """Qwen2.5-VL processor pixel bounds for the reasoning frame."""
    return {"min_pixels": int(min_pixels), "max_pixels": int(frame_size) * int(frame_size)}


def build_serve_command(
    model: str = "visionreasoner-7b",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    tensor_parallel: int = 1,
    data_parallel: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    dtype: str = "bfloat16",
    frame_size: int = 840,
    served_model_name: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``vllm serve`` argv for a registry name, hub id or local folder.

    Args:
        model: registry name (``visionreasoner-7b``), hub id or local folder.
        host / port: where the server listens.
        tensor_parallel / data_parallel: GPUs per engine copy, engine copies.
        gpu_memory_utilization: share of each GPU's memory vLLM may take.
        max_model_len: context length (default: :func:`recommended_max_model_len` for the model's budget).
        dtype: ``bfloat16`` (default), ``float16``, ``float32``, ``auto`` (or bf16 / fp16 / fp32).
        frame_size: reasoning frame side (sets ``max_pixels``).
        served_model_name: the name clients use (default: the registry short name plus the hub id;
            for unregistered models vLLM's default, the model string).
        extra_args: more ``vllm serve`` flags, appended as given.

    Raises:
        UnknownModelError: ``model`` is not a registry name, hub id or folder (or is a segmenter).
        ValueError: a parallel size below 1, a memory share outside (0, 1], a bad dtype.
    """
    from .registry import resolve_model

    if tensor_parallel < 1 or data_parallel < 1:
        raise ValueError("--tensor-parallel and --data-parallel must be >= 1")
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"--gpu-memory-utilization must be in (0, 1], got {gpu_memory_utilization}")
    entry = resolve_model(model, "reasoner")
    budget = entry.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    if served_model_name:
        names = [served_model_name]
    elif entry.registered:
        names = [entry.name, entry.hub_id]
    else:
        names = [entry.hub_id]
    argv = [
        "vllm", "serve", entry.hub_id,
        "--served-model-name", *names,
        "--host", host,
        "--port", str(int(port)),
        "--dtype", vllm_dtype(dtype),
        "--max-model-len", str(int(max_model_len or recommended_max_model_len(budget, frame_size))),
        "--limit-mm-per-prompt", json.dumps({"image": 1}),
        "--mm-processor-kwargs", json.dumps(mm_processor_kwargs(frame_size)),
        "--generation-config", "auto",
        "--gpu-memory-utilization", f"{gpu_memory_utilization:g}",
    ]
    if tensor_parallel > 1:
        argv += ["--tensor-parallel-size", str(tensor_parallel), "--mm-encoder-tp-mode", "data"]
    if data_parallel > 1:
        argv += ["--data-parallel-size", str(data_parallel)]
    argv += list(extra_args)
    return argv


def format_command(argv: Sequence[str]) -> str:
    """The argv as one shell-quoted line."""
    return shlex.join(list(argv))


def _vllm_executable() -> list[str] | None:
    """How to start vLLM here: the ``vllm`` script, or ``python -m vllm.entrypoints.cli.main``."""
    import importlib.util

    exe = shutil.which("vllm")
    if exe:
        return [exe]
    try:
        found = importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):
        found = False
    return [sys.executable, "-m", "vllm.entrypoints.cli.main"] if found else None


def serve(argv: Sequence[str], *, print_only: bool = False, stream=None) -> int:
    """Print the command, then (unless ``print_only``) replace this process with it.

    Raises:
        MissingDependencyError: vLLM is not installed and ``print_only`` is false.
    """
    out = sys.stdout if stream is None else stream
    print(format_command(argv), file=out, flush=True)
    if print_only:
        return 0
    launcher = _vllm_executable()
    if launcher is None:
        raise MissingDependencyError(
            f"vLLM is not installed here: {_INSTALL_HINT}, or pass --print to only print the command"
        )
    full = [*launcher, *argv[1:]]
    os.execvp(full[0], full)  # does not return
    return 0  # pragma: no cover


__all__ = [
    "DEFAULT_MIN_PIXELS",
    "TEXT_TOKENS_ALLOWANCE",
    "build_serve_command",
    "format_command",
    "mm_processor_kwargs",
    "recommended_max_model_len",
    "serve",
    "visual_tokens",
    "vllm_dtype",
]
