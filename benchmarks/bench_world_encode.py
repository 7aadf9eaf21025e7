"""World video encoding at demo size: is the mp4 a function of the frames alone, and what do the x264 settings cost?

Two settings of :data:`cjepa.data.video.X264_OPTIONS` are compared on the demo's world videos (configs/world/
demo_encoder.yaml: 32x32, 64 frames): ``mbtree-off`` (ours) and ``mbtree-on`` (x264's default, what the
project wrote before). For each:

- ``heap_changed``: encodes whose bytes differ from a first encode of the same frames, made after freed heap
  memory was filled with a byte pattern (--fills patterns per video; the mp4 must not depend on the heap);
- ``encode_ms``: encode_video per video (median, p20, p80 over the videos and repeats);
- ``mean_bytes`` and ``mean_psnr_db`` (decoded frames against the rendered ones);
- ``render_s``: :func:`generate_split` of --render-videos videos in this process (workers=1: the setting is
  switched in this process only), best of --rounds interleaved rounds, so both settings see the same load.

    python benchmarks/bench_world_encode.py --save
    python benchmarks/bench_world_encode.py --videos 4 --render-videos 2 --rounds 1   # quick look
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fill_freed_heap, table, write_rows  # noqa: E402

import cjepa.data.video as video  # noqa: E402
from cjepa.config import load_config  # noqa: E402
from cjepa.data.world.generate import generate_split, generate_video  # noqa: E402
from cjepa.paths import config_path  # noqa: E402

SETTINGS = {"mbtree-off": {**video.X264_OPTIONS, "mbtree": "0"}, "mbtree-on": {**video.X264_OPTIONS, "mbtree": "1"}}
FILLS = (0x00, 0xFF, 0x5A, 0xA5, 0x33, 0xCC, 0x0F, 0xF0)


def measure_encoding(world, frames: list[np.ndarray], fills: int, repeats: int) -> dict:
    changed, times, sizes, psnrs = 0, [], [], []
    for f in frames:
        ref = video.encode_video(f, fps=world.fps, crf=world.crf)
        for byte in FILLS[:fills]:
            fill_freed_heap(byte)
            changed += video.encode_video(f, fps=world.fps, crf=world.crf) != ref
        for _ in range(repeats):
            t = time.perf_counter()
            video.encode_video(f, fps=world.fps, crf=world.crf)
            times.append((time.perf_counter() - t) * 1e3)
        sizes.append(len(ref))
        psnrs.append(video.psnr(video.decode_frames(ref), f))
    q = statistics.quantiles(times, n=10)
    return {"heap_changed": changed, "heap_trials": len(frames) * fills, "encode_ms": statistics.median(times),
            "encode_ms_p20": q[1], "encode_ms_p80": q[7], "mean_bytes": float(np.mean(sizes)),
            "mean_psnr_db": float(np.mean(psnrs))}


def render_seconds(world, n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        generate_split(world, "train", n, tmp, workers=1, progress=False)
        return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=16, help="world videos for the heap and encode measurements")
    p.add_argument("--fills", type=int, default=4, help=f"byte patterns per video (at most {len(FILLS)})")
    p.add_argument("--repeats", type=int, default=3, help="timed encodes per video")
    p.add_argument("--render-videos", type=int, default=16, help="videos per timed render of a split")
    p.add_argument("--rounds", type=int, default=2, help="interleaved render rounds per setting (best is kept)")
    p.add_argument("--save", action="store_true", help="append the rows to benchmarks/results/")
    p.add_argument("--out", default=None,
                   help="JSONL file for --save (default benchmarks/results/<device>_<date>.jsonl)")
    args = p.parse_args(argv)

    world = load_config([str(config_path("world/demo_encoder.yaml"))], []).world
    frames = [generate_video(world, "train", i).frames for i in range(args.videos)]
    original = dict(video.X264_OPTIONS)
    rows = {name: {"setting": name, "x264_options": opts} for name, opts in SETTINGS.items()}
    try:
        for name, opts in SETTINGS.items():
            video.X264_OPTIONS.clear(), video.X264_OPTIONS.update(opts)
            rows[name].update(measure_encoding(world, frames, args.fills, args.repeats))
        renders: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for _ in range(args.rounds):
            for name, opts in SETTINGS.items():
                video.X264_OPTIONS.clear(), video.X264_OPTIONS.update(opts)
                renders[name].append(render_seconds(world, args.render_videos))
    finally:
        video.X264_OPTIONS.clear(), video.X264_OPTIONS.update(original)
    for name in SETTINGS:
        rows[name].update(render_s=min(renders[name]), render_s_rounds=renders[name], render_videos=args.render_videos,
                          world=f"{world.height}x{world.width}x{world.num_frames}", crf=world.crf)
    print(table([(r["setting"], f"{r['heap_changed']}/{r['heap_trials']}",
                  f"{r['encode_ms']:.2f} ({r['encode_ms_p20']:.2f}-"
                  f"{r['encode_ms_p80']:.2f})", f"{r['mean_bytes']:.0f}", f"{r['mean_psnr_db']:.2f}",
                  " / ".join(f"{s:.1f}" for s in r["render_s_rounds"])) for r in rows.values()],
                ["x264", "changed after heap fill", "encode ms (p20-p80)", "mp4 bytes", "PSNR dB",
                 f"render {args.render_videos} videos, s"]))
    if args.save:
        print("rows ->", write_rows(list(rows.values()), torch.device("cpu"), "world_encode"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
