"""Images per second of ``segzero batch`` with the local and the Ray engine, and Ray's overhead per image.

A scripted reasoner (answers at once: two objects per image) and the tiny random SAM2 (segzero_tool.testing), so
the figures are the engines' own costs plus a small segmenter, on this machine's CPUs. Ray runs locally
(``ray.init(num_cpus=N)``); its start-up is timed apart, and each Ray job includes creating its actors and loading
the models in them (what a real job pays once).

    python benchmarks/batch_speed.py [--images 64] [--size 640x480] [--batch-size 8] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_result  # noqa: E402

ANSWER = ('<think>Two things.</think><answer>[{"bbox_2d": [168,126,588,672], "point_2d": [378,420]}, '
          '{"bbox_2d": [600,100,800,300], "point_2d": [700,200]}]</answer>')
SCRIPTED = '''
import json
from pathlib import Path
from segzero_tool.reasoners.base import Reasoner, ReasonerOutput

class Scripted(Reasoner):
    name = "scripted"
    model_id = "scripted"
    def __init__(self, answer):
        self.answer = answer
    @classmethod
    def from_pretrained(cls, folder, **kw):
        return cls(json.loads((Path(folder) / "script.json").read_text()))
    def generate(self, requests):
        return [ReasonerOutput(self.answer, finish_reason="stop") for _ in requests]
'''

PLAN = """
## Plan for N GPU nodes (not measured here: no GPU in this run)

Per stage, with the flags of `segzero batch --engine ray`:

| stage | runs as | resources per copy | copies |
|---|---|---|---|
| decode (read, check, resize to the 840x840 frame) | Ray tasks | `--ray-decode-cpus 1` | as many as free CPUs |
| reasoner (VisionReasoner-7B, bf16) | actor pool | `--ray-reasoner-gpus 1` (one 7B model per GPU) | `--ray-reasoner-actors` = GPUs left for it |
| segmenter (SAM 2.1 large) + shard writer | actor pool | `--ray-segmenter-gpus 0.25` (4 share a GPU) | `--ray-segmenter-actors` |

Expected throughput: the job runs at the speed of its slowest stage, min(R x r, S x s, D x d) images/s, with R, S, D
the copies and r, s, d the per-copy rates. What we have: d (decode, CPU) and the engine overhead from the table
above (Ray adds the per-image cost shown, spread over the workers); the SAM2 *CPU* encoder (benchmarks/results/
sam2_cpu.md, ~25 s per image for hiera-large, random weights) says nothing about a GPU. What is missing, and how
to measure it on one GPU: r = reasoner images/s at the job's batch size (`benchmarks/reasoner_speed.py` on the GPU
with the real checkpoint: batch prefill + ~150 decode tokens per answer), s = SAM2 images/s (`benchmarks/
sam2_speed.py` on the GPU: encoder + decoder for ~2 objects). The reasoner is expected to dominate (a 7B VLM answer
takes far longer than one SAM2 image), so the plan is: one reasoner actor per GPU on every node, and enough
fractional segmenter actors that S x s >= R x r (start with one segmenter per 4 reasoner GPUs at 0.25 GPU each,
then check with the GPU numbers). Throughput is then about N_gpus x r images/s, minus the Ray overhead per image
measured above. With reasoner_backend vllm, Ray Data's vLLM processor replaces the reasoner pool (continuous
batching: r rises with the batch size); that path is untested here.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    import numpy as np
    from PIL import Image

    from segzero_tool.batch.engine_local import LocalEngine
    from segzero_tool.batch.engine_ray import RayEngine
    from segzero_tool.batch.job import run_batch
    from segzero_tool.settings import PipelineSettings
    from segzero_tool.testing.tiny_sam2 import build_tiny_sam2

    w, h = (int(v) for v in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="batch-speed-"))
    images = tmp / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(args.images):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / f"{i:04d}.png")
    big = tmp / "images-x4"  # 4x the images: the marginal cost per image, without the fixed costs of a job
    big.mkdir()
    for i in range(4 * args.images):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(big / f"{i:04d}.png")
    plugin = tmp / "plugin"
    plugin.mkdir()
    (plugin / "bench_scripted.py").write_text(SCRIPTED)
    (plugin / "script.json").write_text(json.dumps(ANSWER))
    sys.path.insert(0, str(plugin))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])
    segmenter = build_tiny_sam2(tmp / "sam2", seed=0)
    settings = PipelineSettings(reasoner=str(plugin), reasoner_backend="bench_scripted:Scripted",
                                segmenter=str(segmenter), device="cpu")
    t0 = time.perf_counter()
    pipe = settings.build_pipeline(with_verifier=False)
    load_s = time.perf_counter() - t0

    def job(engine, name: str, folder: Path = images) -> float:
        n = len(list(folder.iterdir()))
        t = time.perf_counter()
        res = run_batch(engine, folder, tmp / name, query="the thing", batch_size=args.batch_size, progress=False)
        assert res.summary["complete"] and res.summary["ok"] == n, res.summary
        return time.perf_counter() - t

    local = [job(LocalEngine(pipe), f"local-{r}") for r in range(args.repeat)]
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in Ray's workers (Ray sets OMP_NUM_THREADS=1 there)
    local1 = [job(LocalEngine(pipe), f"local1-{r}") for r in range(args.repeat)]
    local1_big = job(LocalEngine(pipe), "local1-x4", big)
    torch.set_num_threads(threads)
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    ray_start_s = time.perf_counter() - t0
    engine = RayEngine(settings)
    ray_runs = [job(engine, f"ray-{r}") for r in range(args.repeat)]
    ray_big = job(engine, "ray-x4", big)
    t0 = time.perf_counter()
    ray.shutdown()
    ray_stop_s = time.perf_counter() - t0
    same = all((tmp / f"ray-{r}" / "results.jsonl").read_text().count("\n") == args.images for r in range(args.repeat))
    lt, rt = statistics.median(local), statistics.median(ray_runs)
    l1 = statistics.median(local1)
    extra = 3 * args.images  # the x4 job's images beyond the small job's
    marginal_local = (local1_big - l1) / extra * 1000
    marginal_ray = (ray_big - rt) / extra * 1000
    payload = {"machine": machine(), "images": args.images, "size": [w, h], "batch_size": args.batch_size,
               "num_cpus": args.num_cpus, "model_load_local_s": round(load_s, 3),
               "local_s": [round(x, 3) for x in local], "local_1_thread_s": [round(x, 3) for x in local1],
               "torch_threads": threads, "ray_s": [round(x, 3) for x in ray_runs],
               "ray_start_s": round(ray_start_s, 3), "ray_shutdown_s": round(ray_stop_s, 3),
               "local_images_per_s": round(args.images / lt, 2), "ray_images_per_s": round(args.images / rt, 2),
               "local_1_thread_images_per_s": round(args.images / l1, 2),
               "ray_overhead_ms_per_image": round((rt - l1) / args.images * 1000, 1), "records_complete": same,
               "x4_images": 4 * args.images, "local_1_thread_x4_s": round(local1_big, 3), "ray_x4_s": round(ray_big, 3),
               "marginal_ms_per_image_local_1_thread": round(marginal_local, 1),
               "marginal_ms_per_image_ray": round(marginal_ray, 1),
               "ray_marginal_overhead_ms_per_image": round(marginal_ray - marginal_local, 1)}
    md = f"""# segzero batch: local vs Ray engine on CPU (scripted reasoner, tiny random SAM2)

{args.images} PNG images {w}x{h} (random pixels), one query, batch size {args.batch_size}; the reasoner answers at
once (two objects per image), the segmenter is the tiny random SAM2 of segzero_tool.testing (fp32, CPU). Medians of
{args.repeat} whole jobs (`run_batch` into a fresh folder: decode, reason, segment, records, COCO export). Ray on
this machine (`ray.init(num_cpus={args.num_cpus})`), 1 reasoner actor and 1 segmenter actor, no GPU; each Ray job
includes creating its actors and loading the models in them. Machine: {payload['machine'].get('cpu_model', '?')},
{payload['machine']['cpu_count']} CPUs, Python {payload['machine']['python']}, torch {payload['machine'].get('torch')}.
Run with `python benchmarks/batch_speed.py`.

| | local engine, torch {threads} threads | local engine, torch 1 thread | Ray engine |
|---|---|---|---|
| job time (s, median) | {lt:.2f} | {l1:.2f} | {rt:.2f} |
| **images / s** | **{args.images / lt:.2f}** | **{args.images / l1:.2f}** | **{args.images / rt:.2f}** |
| Ray overhead per image (Ray minus local 1 thread, ms) | | | {(rt - l1) / args.images * 1000:.0f} |
| {4 * args.images}-image job (s) | | {local1_big:.2f} | {ray_big:.2f} |
| marginal ms per image (the {4 * args.images}-image job minus the {args.images}-image one, per extra image) | | {marginal_local:.1f} | {marginal_ray:.1f} |
| **Ray's overhead per image once running** (marginal, Ray minus local 1 thread, ms) | | | **{marginal_ray - marginal_local:.1f}** |
| Ray start-up (`ray.init`, once per process, s) | | | {ray_start_s:.1f} |
| Ray shutdown (s) | | | {ray_stop_s:.1f} |
| model load in this process (s) | {load_s:.2f} | | (in the actors, inside the job time) |

Ray's workers run torch with one thread (Ray sets `OMP_NUM_THREADS=1` for actors with less than one CPU), and on
these 2 cores the local engine with one torch thread is the fair baseline for Ray's overhead. In the Ray job the decode
tasks, the reasoner actor and the segmenter actor overlap (pipelined), the local engine overlaps only decoding.
The first overhead row divides the whole difference by the images, so it counts what a Ray job pays once (creating
the actors, loading the models in them, planning the dataset); the marginal row takes the difference between the
{4 * args.images}-image and the {args.images}-image jobs per extra image, which is what each further image costs once
the job runs. On a shared machine timings vary between runs (the load averages are in the JSON).

All runs: {args.images} records each (`records_complete`: {same}).
""" + PLAN
    write_result("batch_speed_cpu", payload, md)
    print(md)


if __name__ == "__main__":
    main()
