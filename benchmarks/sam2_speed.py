"""SAM2 and SAM 3 speed through the project's segmenters: image encoder, mask decoder and the embedding cache.

For each architecture (``hiera-tiny``, ``hiera-large``: the published SAM 2.1 image-encoder
hyper-parameters from ``segzero_tool.testing.tiny_sam2.sam2_config``) a ``Sam2Model`` is built with
random weights (the cost does not depend on the weights), wrapped in
``TransformersSam2Segmenter``; for ``sam3`` a ``Sam3TrackerModel`` of the released ``facebook/sam3``
tracker architecture (``segzero_tool.testing.tiny_sam3.sam3_tracker_config("real")``: a 32-layer
ViT-L-sized encoder on 1008² inputs) with random weights, wrapped in ``TransformersSam3Segmenter``.
Each is timed on one 1280x720 RGB image with random content:

* ``encoder_ms``: ``segmenter.encode(image)`` with the cache cleared before each call (content
  hash + the processor's resize/normalise to 1024² (SAM 3: 1008²) + ``get_image_embeddings``);
* ``decoder_ms_1`` / ``decoder_ms_4``: ``segmenter.decode(embedding, prompts)`` for 1 and 4 objects,
  each a box plus one positive point (4 such objects are one decoder batch); includes choosing the
  best of the 3 candidate masks and resizing it to 1280x720;
* ``decoder_ms_per_object`` = ``decoder_ms_4 / 4`` (the per-object cost when the objects of an
  image are batched, as ``segment`` does; ``decoder_ms_1`` is the cost of a lone object);
* ``cold_segment_ms``: ``segmenter.segment(image, [one object])`` with an empty cache;
* ``cached_segment_ms``: ``segment`` of the same image with a different one-object prompt each call
  (cache hit: content hash + decoder);
* ``cache_speedup`` = cold / cached (target: >= 10x).

Also reported, to see where the time goes: ``hash_ms`` (the content hash that keys the cache),
``preprocess_ms`` (the processor's resize/normalise) and ``postprocess_ms`` (upsampling one low-res
mask to 1280x720 and thresholding).

Usage::

    python benchmarks/sam2_speed.py                       # CPU, float32, hiera-tiny, hiera-large, sam3
    python benchmarks/sam2_speed.py --device cuda [--dtype bf16]
    python benchmarks/sam2_speed.py --archs hiera-tiny --encoder-repeat 3
    python benchmarks/sam2_speed.py --archs sam3 --sam3-encoder-repeat 2

Writes ``results/sam2_cpu.{json,md}`` on CPU and ``results/sam2_cuda.{json,md}`` on CUDA (the
dtype is recorded in both). ``overhead.py`` reads ``archs["hiera-large"]["encoder_ms"]`` and
``["decoder_ms_per_object"]`` from ``sam2_cpu.json``.

Repeat counts are chosen so that the SAM2 archs finish in about 2 minutes on 2 CPU cores (the
hiera-large encoder alone takes ~14 s there). SAM 3's encoder is several times slower on a CPU, so on
CPU its encoder and cold-segment timings default to one call each after the warm-up
(``--sam3-encoder-repeat``; on CUDA it follows ``--encoder-repeat``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import timeit, write_result  # noqa: E402

from segzero_tool.segmenters.base import ObjectPrompt, image_key  # noqa: E402
from segzero_tool.segmenters.transformers_sam2 import TransformersSam2Segmenter  # noqa: E402
from segzero_tool.testing.tiny_sam2 import sam2_config, sam2_processor  # noqa: E402

#: The SAM 3 tracker's name in ``--archs``.
SAM3 = "sam3"

WIDTH, HEIGHT = 1280, 720
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def _prompts(n: int, shift: int = 0) -> list[ObjectPrompt]:
    """``n`` objects, each a box and one positive point inside it, in 1280x720 pixels."""
    out = []
    for i in range(n):
        x1 = 40 + 290 * i + shift
        y1 = 80 + 30 * i + shift
        x2, y2 = x1 + 240, y1 + 420
        out.append(ObjectPrompt(box=(x1, y1, x2, y2), points=(((x1 + x2) / 2, (y1 + y2) / 2),)))
    return out


def _build(arch: str, device: str, dtype: Any) -> tuple[TransformersSam2Segmenter, float, float]:
    """Random-weight model on ``device``; returns (segmenter, params in millions, build seconds)."""
    import torch

    t0 = time.perf_counter()
    torch.manual_seed(0)
    segmenter: TransformersSam2Segmenter
    if arch == SAM3:
        from transformers import Sam3TrackerModel

        from segzero_tool.segmenters.transformers_sam3 import TransformersSam3Segmenter
        from segzero_tool.testing.tiny_sam3 import sam3_tracker_config, sam3_tracker_processor

        config = sam3_tracker_config("real")
        model = Sam3TrackerModel(config).to(device=device, dtype=dtype).eval()
        segmenter = TransformersSam3Segmenter(model, sam3_tracker_processor(config), device=device)
    else:
        from transformers import Sam2Model

        config = sam2_config(arch)
        model = Sam2Model(config).to(device=device, dtype=dtype).eval()
        processor = sam2_processor(config.prompt_encoder_config.image_size)
        segmenter = TransformersSam2Segmenter(model, processor, device=device)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    return segmenter, params_m, time.perf_counter() - t0


def _bench_arch(arch: str, args: argparse.Namespace, dtype: Any) -> dict[str, Any]:
    import torch

    cuda = args.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    seg, params_m, build_s = _build(arch, args.device, dtype)
    print(f"[{arch}] {params_m:.1f}M parameters, built in {build_s:.1f} s", flush=True)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    enc_rep, dec_rep = args.encoder_repeat, args.decoder_repeat
    if arch == SAM3:
        enc_rep = args.sam3_encoder_repeat or (args.encoder_repeat if cuda else 1)

    # Encoder: cache cleared before every call, so each call runs the vision encoder.
    def encode_cold():
        seg.cache.clear()
        seg.encode(image)
        sync()

    encoder = timeit(encode_cold, repeat=enc_rep, warmup=1)
    print(f"[{arch}] encoder {encoder['median_ms']:.0f} ms", flush=True)

    # The pieces around the encoder.
    hash_t = timeit(lambda: image_key(image), repeat=dec_rep, warmup=1)

    def preprocess():
        seg.processor(images=image, return_tensors="pt", input_data_format="channels_last", device=args.device)
        sync()

    pre_t = timeit(preprocess, repeat=dec_rep, warmup=1)

    # Decoder on a fixed embedding.
    seg.cache.clear()
    embedding = seg.encode(image)
    sync()
    one, four = _prompts(1), _prompts(4)
    dec1 = timeit(lambda: seg.decode(embedding, one), repeat=dec_rep, warmup=1)
    dec4 = timeit(lambda: seg.decode(embedding, four), repeat=dec_rep, warmup=1)
    side = seg.low_res_size  # S/4 for SAM2 (256), 4 x the 72-patch grid for SAM 3 (288)
    low_res = torch.zeros((1, 1, side, side), dtype=torch.float32, device=args.device)

    def postprocess():
        seg.processor.post_process_masks([low_res], [[HEIGHT, WIDTH]], mask_threshold=0.0, binarize=True)[0].cpu()

    post_t = timeit(postprocess, repeat=dec_rep, warmup=1)
    print(f"[{arch}] decoder 1 obj {dec1['median_ms']:.0f} ms, 4 obj {dec4['median_ms']:.0f} ms", flush=True)

    # Cold segment (empty cache) vs. a cached repeat of the same image with a different prompt.
    def segment_cold():
        seg.cache.clear()
        seg.segment(image, one)

    cold = timeit(segment_cold, repeat=enc_rep, warmup=0)  # warm already: the encoder ran above
    shifts = iter(range(1, 10_000))
    seg.cache.clear()
    seg.segment(image, one)  # fill the cache

    def segment_cached():
        seg.segment(image, _prompts(1, shift=next(shifts)))

    cached = timeit(segment_cached, repeat=dec_rep, warmup=1)
    stats = seg.cache.stats()
    assert stats["hits"] == dec_rep + 1 and stats["misses"] == 1, stats  # every repeat was a hit
    speedup = cold["median_ms"] / cached["median_ms"]
    print(f"[{arch}] segment cold {cold['median_ms']:.0f} ms, cached {cached['median_ms']:.0f} ms "
          f"({speedup:.0f}x)", flush=True)
    seg.close()
    return {
        "model": type(seg.model).__name__,
        "input_side": seg.image_size,
        "encoder_repeat": enc_rep,
        "params_m": round(params_m, 1),
        "encoder_ms": encoder["median_ms"],
        "decoder_ms_per_object": dec4["median_ms"] / 4,
        "decoder_ms_1": dec1["median_ms"],
        "decoder_ms_4": dec4["median_ms"],
        "cold_segment_ms": cold["median_ms"],
        "cached_segment_ms": cached["median_ms"],
        "cache_speedup": speedup,
        "hash_ms": hash_t["median_ms"],
        "preprocess_ms": pre_t["median_ms"],
        "postprocess_ms": post_t["median_ms"],
        "build_s": build_s,
        "timings": {"encoder": encoder, "decoder_1": dec1, "decoder_4": dec4, "cold_segment": cold,
                    "cached_segment": cached, "hash": hash_t, "preprocess": pre_t, "postprocess": post_t},
    }


def _markdown(archs: dict[str, dict[str, Any]], args: argparse.Namespace, threads: int, total_s: float) -> str:
    names = list(archs)
    rows = [
        ("model (random weights)", lambda r: f"`{r.get('model', 'Sam2Model')}`"),
        ("parameters (image-only model)", lambda r: f"{r['params_m']:.1f} M"),
        ("encoder per image (`encode`, cache cleared)", lambda r: f"{r['encoder_ms']:.0f}"),
        ("  timed encoder calls (after 1 warm-up)", lambda r: f"{r.get('encoder_repeat', args.encoder_repeat)}"),
        ("  of which content hash", lambda r: f"{r['hash_ms']:.1f}"),
        ("  of which resize/normalise to the input side",
         lambda r: f"{r['preprocess_ms']:.1f} ({r.get('input_side', 1024)}²)"),
        ("decoder, 1 object (`decode`)", lambda r: f"{r['decoder_ms_1']:.1f}"),
        ("decoder, 4 objects in one batch", lambda r: f"{r['decoder_ms_4']:.1f}"),
        ("**decoder per object** (4-object batch / 4)", lambda r: f"**{r['decoder_ms_per_object']:.1f}**"),
        ("  mask upsample to 1280x720 (per object)", lambda r: f"{r['postprocess_ms']:.1f}"),
        ("cold `segment`, 1 object (empty cache)", lambda r: f"{r['cold_segment_ms']:.0f}"),
        ("cached `segment`, same image, new prompt", lambda r: f"{r['cached_segment_ms']:.1f}"),
        ("**cache speed-up** (cold / cached; target >= 10x)",
         lambda r: f"**{r['cache_speedup']:.0f}x** ({'met' if r['cache_speedup'] >= 10 else 'NOT met'})"),
    ]
    lines = ["| ms (median) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(archs[n]) for n in names) + " |")
    dev = "CUDA" if args.device.startswith("cuda") else "CPU"
    return (
        f"# SAM2 / SAM 3 speed on {dev} ({args.dtype}, {threads} torch threads; random weights)\n\n"
        f"Image 1280x720 RGB; prompts = box + 1 positive point per object; encoder medians of the timed "
        f"calls in the table (after 1 warm-up), decoder / cached medians of {args.decoder_repeat}. "
        f"Whole run {total_s:.0f} s.\n\n" + "\n".join(lines) + "\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="hiera-tiny,hiera-large,sam3",
                    help="comma-separated sam2_config architectures and/or 'sam3' (the released SAM 3 tracker) "
                         "(default: hiera-tiny,hiera-large,sam3)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                    help="weights dtype (default fp32; bf16 only on CUDA)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    ap.add_argument("--encoder-repeat", type=int, default=2,
                    help="timed encoder / cold-segment calls per arch (default 2, plus 1 warm-up)")
    ap.add_argument("--sam3-encoder-repeat", type=int, default=None,
                    help="timed encoder / cold-segment calls for sam3 (default: 1 on CPU, --encoder-repeat on CUDA)")
    ap.add_argument("--decoder-repeat", type=int, default=10, help="timed decoder / cached calls (default 10)")
    args = ap.parse_args()

    import torch

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda was given but torch sees no CUDA device")
    if args.dtype == "bf16" and not cuda:
        sys.exit("--dtype bf16 is for CUDA only (bf16 matmuls are slow on CPU, and sam2_cpu.json is fp32)")
    torch.set_num_threads(max(1, args.threads))
    dtype = getattr(torch, DTYPES[args.dtype])
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    results = {arch: _bench_arch(arch, args, dtype) for arch in archs}
    total_s = time.perf_counter() - t0
    load_after = os.getloadavg()
    md = _markdown(results, args, torch.get_num_threads(), total_s)
    name = "sam2_cuda" if cuda else "sam2_cpu"
    write_result(name, {"device": args.device, "dtype": args.dtype, "image_size": [WIDTH, HEIGHT],
                        "encoder_repeat": args.encoder_repeat, "decoder_repeat": args.decoder_repeat,
                        "total_s": total_s, "loadavg_1_5_15_before": load_before,
                        "loadavg_1_5_15_after": load_after, "archs": results}, md)
    print(md)
    print(f"total {total_s:.0f} s; wrote results/{name}.json and .md")


if __name__ == "__main__":
    main()
