"""Video tracking speed: frames per second of SAM2's video propagation through ``TransformersVideoTracker``.

For each architecture (``tiny-video-test``: the unit tests' tiny model; ``hiera-tiny`` ... ``hiera-large``: the
published SAM 2.1 hyper-parameters with the video memory modules, from
``segzero_tool.testing.tiny_sam2.sam2_video_config``) a ``Sam2VideoModel`` is built in memory with random weights
(spread as ``build_tiny_sam2_video`` does; the cost does not depend on the weights) and wrapped in
``TransformersVideoTracker(model, processor, device=...)``, the tracker ``track_video`` and ``TrackingSession``
drive. For 1 and for 3 objects (the shapes of ``segzero_tool.testing.synthetic_video.moving_shapes``, drawn at
``--size``, default 1280x720), a fresh run starts the objects from their true masks on frame 0
(``tracker.step(frame, new_objects={id: mask})``), then every later frame is one ``tracker.step(frame)``:

* ``step_ms``: wall time of one propagation step (the processor's resize / normalise of the frame, the image
  encoder, memory attention over the object's memory frames and pointers, the mask decoder, the memory encoder,
  the masks upsampled to the frame size), median over the timed frames; ``fps`` = 1000 / ``step_ms``;
* ``encoder_ms``: the image encoder alone (``model.vision_encoder``, timed by forward hooks inside the same
  steps; once per frame, whatever the number of objects);
* ``preprocess_ms``: the processor's resize / normalise of one frame (timed on its own);
* ``rest_ms`` = ``step_ms`` - ``encoder_ms`` - ``preprocess_ms``: the per-object work (memory attention, mask
  decoder, memory encoder) and the upsampling of the masks.

SAM2 reads up to 7 memory frames (``num_maskmem``), so a step's cost grows over the first frames of a run. The
first ``--warmup`` frames after frame 0 (default: ``num_maskmem``, the memory bank full from then on) are timed
too and recorded per frame, but the medians are over the ``--frames`` steady-state frames after them.

Usage::

    python benchmarks/video_speed.py                                   # CPU fp32: tiny-video-test, hiera-tiny, hiera-large
    python benchmarks/video_speed.py --archs hiera-tiny --frames 3 --no-write
    python benchmarks/video_speed.py --device cuda                     # bf16 on CUDA -> results/video_speed_cuda.*

Writes ``results/video_speed_cpu.{json,md}`` (``video_speed_cuda.*`` with ``--device cuda``); ``--no-write``
only prints.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import timeit, write_result  # noqa: E402

DEFAULT_ARCHS = "tiny-video-test,hiera-tiny,hiera-large"
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be WIDTHxHEIGHT, e.g. 1280x720 (got {text!r})") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError("--size must be at least 32x32")
    return w, h


def _build(arch: str, device: str, dtype: Any) -> tuple[Any, float, float]:
    """A random-weight ``TransformersVideoTracker`` of ``arch`` on ``device``: (tracker, params in millions, s)."""
    import torch
    from transformers import Sam2VideoModel

    from segzero_tool.testing.tiny_sam2 import _spread_weights, sam2_video_config, sam2_video_processor
    from segzero_tool.video.tracker import TransformersVideoTracker

    t0 = time.perf_counter()
    config = sam2_video_config(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Sam2VideoModel(config).eval()
        _spread_weights(model)
    model = model.to(device=device, dtype=dtype).eval()
    tracker = TransformersVideoTracker(model, sam2_video_processor(config.image_size), device=device,
                                       model_id=f"random SAM 2.1 {arch}")
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    return tracker, params_m, time.perf_counter() - t0


class _EncoderClock:
    """Forward hooks on ``model.vision_encoder`` summing its wall time (synchronising CUDA around it)."""

    def __init__(self, module: Any, cuda: bool) -> None:
        import torch

        self.total_ms = 0.0
        self.calls = 0
        self._t0 = 0.0
        self._sync = torch.cuda.synchronize if cuda else (lambda: None)
        self._handles = [module.register_forward_pre_hook(self._pre), module.register_forward_hook(self._post)]

    def _pre(self, *_: Any) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def _post(self, *_: Any) -> None:
        self._sync()
        self.total_ms += (time.perf_counter() - self._t0) * 1000.0
        self.calls += 1

    def take(self) -> tuple[float, int]:
        out = (self.total_ms, self.calls)
        self.total_ms, self.calls = 0.0, 0
        return out

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _run_objects(tracker: Any, clock: _EncoderClock, n_objects: int, warmup: int, args: argparse.Namespace
                 ) -> dict[str, Any]:
    """One fresh run: ``n_objects`` started from masks on frame 0, then ``warmup + frames`` propagation steps."""
    from segzero_tool.testing.synthetic_video import moving_shapes

    width, height = args.size
    tracker.reset()
    total = 1 + warmup + args.frames
    steps: list[dict[str, float]] = []
    first_ms = 0.0
    sizes: dict[str, Any] = {}
    for index, frame in enumerate(moving_shapes(total, width=width, height=height)):
        image = frame.image
        new = {oid: frame.masks[oid] for oid in sorted(frame.masks)[:n_objects]} if index == 0 else None
        clock.take()
        t0 = time.perf_counter()
        tracked = tracker.step(image, new_objects=new)
        ms = (time.perf_counter() - t0) * 1000.0
        enc_ms, enc_calls = clock.take()
        if len(tracked) != n_objects:
            raise RuntimeError(f"frame {index}: the tracker returned {len(tracked)} objects, expected {n_objects}")
        if index == 0:
            first_ms = ms
        else:
            steps.append({"frame": index, "step_ms": ms, "encoder_ms": enc_ms, "encoder_calls": enc_calls})
        print(f"  [{n_objects} obj] frame {index}: {ms:.0f} ms (encoder {enc_ms:.0f} ms)", flush=True)
    session = tracker._session  # the transformers inference session: what the tracker keeps between frames
    sizes = {"processed_frames": len(session.processed_frames),
             "non_cond_outputs_per_object": max(len(v["non_cond_frame_outputs"])
                                                for v in session.output_dict_per_obj.values()),
             "memory_window": tracker.memory_window}
    timed = steps[warmup:]
    step_ms = statistics.median(s["step_ms"] for s in timed)
    encoder_ms = statistics.median(s["encoder_ms"] for s in timed)
    return {"objects": n_objects, "first_frame_ms": first_ms, "step_ms": step_ms, "fps": 1000.0 / step_ms,
            "encoder_ms": encoder_ms, "step_ms_min": min(s["step_ms"] for s in timed),
            "step_ms_max": max(s["step_ms"] for s in timed), "timed_frames": len(timed), "per_frame": steps,
            "session": sizes}


def _bench_arch(arch: str, args: argparse.Namespace, dtype: Any) -> dict[str, Any]:
    import torch

    cuda = args.device.startswith("cuda")
    tracker, params_m, build_s = _build(arch, args.device, dtype)
    print(f"[{arch}] {params_m:.1f}M parameters (with the memory modules), built in {build_s:.1f} s", flush=True)
    width, height = args.size
    image = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)

    def preprocess() -> None:
        tracker.processor(images=image, return_tensors="pt")["pixel_values"].to(args.device)
        if cuda:
            torch.cuda.synchronize()

    pre = timeit(preprocess, repeat=5, warmup=1)
    clock = _EncoderClock(tracker.model.vision_encoder, cuda)
    config = tracker.model.config
    warmup = int(config.num_maskmem) if args.warmup is None else args.warmup
    runs: dict[str, Any] = {}
    try:
        for n in args.objects:
            run = _run_objects(tracker, clock, n, warmup, args)
            run["preprocess_ms"] = pre["median_ms"]
            run["rest_ms"] = run["step_ms"] - run["encoder_ms"] - pre["median_ms"]
            runs[str(n)] = run
            print(f"[{arch}] {n} object(s): {run['step_ms']:.1f} ms/frame = {run['fps']:.2f} fps "
                  f"(encoder {run['encoder_ms']:.1f} ms)", flush=True)
    finally:
        clock.remove()
        tracker.close()
    return {"params_m": round(params_m, 1), "input_side": int(config.image_size), "build_s": build_s,
            "num_maskmem": int(config.num_maskmem), "warmup": warmup, "preprocess": pre, "objects": runs}


def _markdown(archs: dict[str, Any], args: argparse.Namespace, threads: int, total_s: float,
              machine_line: str) -> str:
    names = list(archs)
    rows: list[tuple[str, Any]] = [
        ("parameters (image encoder + memory modules)", lambda r: f"{r['params_m']:.1f} M"),
        ("input side", lambda r: f"{r['input_side']}²"),
    ]
    for n in args.objects:
        key = str(n)
        label = f"{n} object{'s' if n > 1 else ''}"
        rows += [
            (f"**{label}: frames per second**", lambda r, k=key: f"**{r['objects'][k]['fps']:.2f}**"),
            ("  ms per frame (`step`, median)", lambda r, k=key: f"{r['objects'][k]['step_ms']:.1f}"),
            ("    of which image encoder", lambda r, k=key: f"{r['objects'][k]['encoder_ms']:.1f}"),
            ("    of which resize / normalise", lambda r, k=key: f"{r['objects'][k]['preprocess_ms']:.1f}"),
            ("    rest (memory attention, decoder, memory encoder, mask upsample)",
             lambda r, k=key: f"{r['objects'][k]['rest_ms']:.1f}"),
            ("  frame 0 (encoder + objects added from masks)",
             lambda r, k=key: f"{r['objects'][k]['first_frame_ms']:.0f}"),
        ]
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(archs[n]) for n in names) + " |")
    dev = "CUDA" if args.device.startswith("cuda") else "CPU"
    w, h = args.size
    warmups = "/".join(sorted({str(r["warmup"]) for r in archs.values()}))
    return (
        f"# Video tracking speed on {dev} ({args.dtype}, {threads} torch threads; random weights)\n\n"
        f"{machine_line}\n\n"
        f"`TransformersVideoTracker.step` on {w}x{h} frames of `moving_shapes`, objects started from masks on "
        f"frame 0; medians over {args.frames} timed frame(s) after {warmups} warm-up frame(s) (SAM2's memory bank "
        f"full from then on). Whole run {total_s:.0f} s.\n\n" + "\n".join(lines) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default=DEFAULT_ARCHS,
                    help=f"comma-separated sam2_video_config architectures (default {DEFAULT_ARCHS}; also "
                         "hiera-small, hiera-base-plus)")
    ap.add_argument("--objects", default="1,3", help="object counts to run, each up to 3 (default 1,3)")
    ap.add_argument("--frames", type=int, default=3, help="timed steady-state frames per run (default 3)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="frames after frame 0 before the timed ones (default: the model's num_maskmem, 7)")
    ap.add_argument("--size", type=_size, default=(1280, 720), help="frame size WIDTHxHEIGHT (default 1280x720)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                    help="weights dtype (default: fp32 on CPU, bf16 on CUDA)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave results/ alone")
    args = ap.parse_args(argv)

    try:
        args.objects = sorted({int(v) for v in args.objects.split(",") if v.strip()})
    except ValueError:
        ap.error(f"--objects must be comma-separated numbers, got {args.objects!r}")
    if not args.objects or min(args.objects) < 1 or max(args.objects) > 3:
        ap.error("--objects: counts from 1 to 3 (moving_shapes draws three shapes)")
    if args.frames < 1 or (args.warmup is not None and args.warmup < 0):
        ap.error("--frames must be >= 1 and --warmup >= 0")

    from segzero_tool.testing.tiny_sam2 import ARCHS

    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    unknown = [a for a in archs if a not in ARCHS or a == "tiny-test"]
    if not archs or unknown:
        ap.error(f"unknown video architecture(s) {unknown}; choose from "
                 f"{sorted(a for a in ARCHS if a != 'tiny-test')}")
    cuda = args.device.startswith("cuda")
    args.dtype = args.dtype or ("bf16" if cuda else "fp32")
    if args.dtype == "bf16" and not cuda:
        ap.error("--dtype bf16 is for CUDA only (these CPUs have no fast bf16 matmuls)")

    import torch

    if cuda and not torch.cuda.is_available():
        print("--device cuda was given but torch sees no CUDA device", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    dtype = getattr(torch, DTYPES[args.dtype])

    from _common import cpu_model

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    results = {arch: _bench_arch(arch, args, dtype) for arch in archs}
    total_s = time.perf_counter() - t0
    load_after = os.getloadavg()
    import transformers

    where = torch.cuda.get_device_name(0) if cuda else f"{cpu_model() or 'CPU'}, {os.cpu_count()} cores"
    machine_line = (f"Machine: {where}; torch {torch.__version__}, transformers {transformers.__version__}; "
                    f"{time.strftime('%Y-%m-%d')}; load average {load_before[0]:.1f} before, "
                    f"{load_after[0]:.1f} after.")
    md = _markdown(results, args, torch.get_num_threads(), total_s, machine_line)
    print(md)
    if not args.no_write:
        name = "video_speed_cuda" if cuda else "video_speed_cpu"
        write_result(name, {"device": args.device, "dtype": args.dtype, "frame_size": list(args.size),
                            "frames": args.frames, "warmup": args.warmup, "total_s": total_s,
                            "loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": load_after,
                            "archs": results}, md)
        print(f"total {total_s:.0f} s; wrote results/{name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
