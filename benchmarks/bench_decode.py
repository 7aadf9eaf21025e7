"""Video decode throughput: the CPU path (PyAV in DataLoader workers) and DALI (NVDEC on a GPU), on the same shards.

Providers, all delivering the decoded clip batch contract (frames (B, T, 3, H, W) float32 normalised, masks, keys,
frame_index) from the same split:

- ``cpu-1``: :class:`VideoClipLoader` in the main process: one decoding worker;
- ``cpu-N``: the same with N DataLoader workers (default: every core);
- ``dali-pyav``: the DALI pipeline with its PyAV decode step (CPU machines; one thread decodes);
- ``dali-nvdec``: the DALI pipeline with ``fn.decoders.video(device="mixed")`` (only where CUDA is available);
- ``dali-cpu``: the DALI pipeline with DALI's own ``fn.decoders.video(device="cpu")`` (VP8/VP9/MJPEG splits:
  ``--codec vp9``), the one fully native DALI path a CPU machine can time;
- ``extract``: whole videos at stride 1 (:func:`iter_videos`, the slot-extraction path), one worker.

Before timing, each provider's first batch is checked against PyAV + ``preprocess_frames`` on the same frames
(CPU paths exactly, DALI by mean error / PSNR). Each timed call pulls ``--batches`` batches from a running
iterator; the table gives clips/s and delivered frames/s (clip frames; a clip's start forces decoding from its
GOP's key frame, which is not counted) with median and p20/p80, and the throughput ratio against ``cpu-1``.
Without ``--shards`` a CLEVRER-sized world split (480x320, 128 frames) is generated into a temporary directory.

    python benchmarks/bench_decode.py --quick
    python benchmarks/bench_decode.py --shards data/world --split train --workers 8 --save
    python benchmarks/bench_decode.py --codec vp9 --providers dali-cpu --repeats 9 --save   # the DALI CPU pipeline
    alone
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, time_fn, timing_row, write_rows  # noqa: E402

from cjepa.config import WorldConfig  # noqa: E402
from cjepa.data.loader import ClipSpec, VideoClipLoader, iter_videos, video_entries  # noqa: E402
from cjepa.data.shards import open_split  # noqa: E402
from cjepa.data.video import decode_frames, preprocess_frames  # noqa: E402


def mp4_bytes(split, keys) -> dict[str, bytes]:
    """The encoded videos of some keys, read through the shard indexes."""
    out = {}
    for e in video_entries(split, lambda *a: None):
        if e.key in keys:
            off, size = e.components["mp4"]
            with open(e.shard.path, "rb") as fh:
                fh.seek(off)
                out[e.key] = fh.read(size)
    return out


def check_batch(batch, split, size, exact: bool) -> float:
    """Compare a batch with PyAV + preprocess_frames on the same frames; returns the mean absolute error."""
    raws = mp4_bytes(split, set(batch["keys"]))
    errs = []
    for i, key in enumerate(batch["keys"]):
        ref = preprocess_frames(decode_frames(raws[key], batch["frame_index"][i].numpy()), size)
        err = (batch["frames"][i].float().cpu() - ref).abs()
        if exact:
            assert float(err.max()) == 0.0, f"{key}: CPU path differs from PyAV + preprocess_frames"
        errs.append(float(err.mean()))
    mean = float(np.mean(errs))
    assert mean < 0.05, f"mean abs error {mean:.4f} against the PyAV reference"
    return mean


def throughput(loader, n_batches: int, repeats: int):
    it = iter(_forever(loader))
    first = next(it)

    def pull():
        for _ in range(n_batches):
            next(it)

    return first, time_fn(pull, torch.device("cpu"), warmup=1, repeats=repeats)


def _forever(loader):
    while True:
        yield from loader


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", default="",
                    help="shard root (default: generate a world split into a temporary directory)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--videos", type=int, default=32, help="videos to generate when --shards is not given")
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--width", type=int, default=480)
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--clip-frames", type=int, default=6)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=196)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=4, help="batches per timed call")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the cpu-N provider (0 = all cores)")
    ap.add_argument("--codec", default="h264", choices=["h264", "vp9"], help="codec of the generated split")
    ap.add_argument("--providers", nargs="*", default=None,
                    help="time only these providers (e.g. dali-cpu); default: all")
    ap.add_argument("--label", default="", help="stored in each JSONL row (e.g. before/after a change)")
    ap.add_argument("--no-extract", action="store_true", help="skip the whole-video extraction row")
    ap.add_argument("--quick", action="store_true", help="8 videos, 3 repeats of 2 batches")
    ap.add_argument("--save", action="store_true", help="append JSONL rows to benchmarks/results/")
    ap.add_argument("--out", default=None, help="JSONL file instead of benchmarks/results/<device>_<date>.jsonl")
    args = ap.parse_args()
    if args.quick:
        args.videos, args.repeats, args.batches = min(args.videos, 8), 3, 2
    workers = args.workers or os.cpu_count() or 1
    # "cpu-1" and "extract" run in this process: one intra-op thread, as in a DataLoader worker (torch sets 1 there);
    # OpenMP threads spinning on a shared machine otherwise make the main process slower than any worker
    torch.set_num_threads(1)
    size = (args.image_size, args.image_size)
    clip = ClipSpec(args.clip_frames, args.stride)

    tmp = None
    root = args.shards
    if not root:
        from cjepa.data.world.generate import generate_split

        tmp = tempfile.TemporaryDirectory(prefix="cjepa-bench-decode-")
        root = tmp.name
        cfg = WorldConfig(height=args.height, width=args.width, num_frames=args.frames,
                          shard_size=max(1, args.videos // (2 * workers)),
                          codec=args.codec)
        s = generate_split(cfg, args.split, args.videos, root, progress=True)
        print(f"generated {s['videos']} videos ({s['bytes'] / 1e6:.1f} MB in {s['shards']} shards) in "
              f"{s['wall_s']:.1f} s, "
              f"{s['seconds_per_video']:.2f} s per video per worker", file=sys.stderr)
    split = open_split(root, args.split)
    m = split.manifest or {}
    print(f"shards: {len(split.shards)}, videos: {m.get('num_samples', '?')}, codec {m.get('codec', '?')}, sizes "
          f"{m.get('frame_sizes')}; "
          f"clips of {clip.frames} frames at stride {clip.stride}, batch {args.batch}, resized to {size}",
          file=sys.stderr)

    providers = {
        "cpu-1": (lambda: VideoClipLoader(split, batch_size=args.batch, clip=clip, image_size=size, num_workers=0),
                  True),
        f"cpu-{workers}": (lambda: VideoClipLoader(split, batch_size=args.batch, clip=clip, image_size=size,
                                                   num_workers=workers), True),
    }
    try:
        from cjepa.data.dali import DaliClipLoader

        providers["dali-pyav"] = (lambda: DaliClipLoader(split, batch_size=args.batch, clip=clip, image_size=size,
                                                         decode="pyav"), False)
        if m.get("codec") in ("vp8", "vp9", "mjpeg"):
            providers["dali-cpu"] = (lambda: DaliClipLoader(split, batch_size=args.batch, clip=clip, image_size=size,
                                                            decode="cpu"), False)
        if torch.cuda.is_available():
            providers["dali-nvdec"] = (lambda: DaliClipLoader(split, batch_size=args.batch, clip=clip, image_size=size,
                                                              decode="nvdec"), False)
    except ImportError:
        print("DALI not installed: DALI providers skipped", file=sys.stderr)
    if args.providers:
        providers = {k: v for k, v in providers.items() if k in args.providers}

    results, rows = {}, []
    for name, (make, exact) in providers.items():
        loader = make()
        first, timing = throughput(loader, args.batches, args.repeats)
        err = check_batch(first, split, size, exact)
        clips = args.batches * args.batch
        results[name] = timing
        rows.append({"provider": name, **timing_row(timing), "clips_per_call": clips, "mean_abs_err_vs_pyav": err,
                     "clips_per_s": clips / (timing.median_ms / 1e3),
                     "frames_per_s": clips * clip.frames / (timing.median_ms / 1e3)})

    # the extraction path: whole videos, every frame, one worker
    if args.no_extract:
        return report(rows, args, clip, size, m, workers, tmp)
    keys = [k for k, *_ in zip(range(2), iter_videos(split, image_size=size))]
    n_frames = m.get("num_frames", 0) // max(1, m.get("num_samples", 1)) or args.frames

    def extract():
        for _ in zip(range(2), iter_videos(split, image_size=size)):
            pass

    t = time_fn(extract, torch.device("cpu"), warmup=0, repeats=max(2, args.repeats // 2))
    results["extract"] = t
    rows.append({"provider": "extract", **timing_row(t), "videos_per_call": len(keys),
                 "frames_per_s": 2 * n_frames / (t.median_ms / 1e3),
                 "clips_per_s": float("nan"), "mean_abs_err_vs_pyav": 0.0})
    print(f"extract = whole {n_frames}-frame videos at stride 1 (frames/s counts every frame)")
    return report(rows, args, clip, size, m, workers, tmp)


def report(rows, args, clip, size, m, workers, tmp) -> int:
    for r in rows:  # frames/s at the p80 and p20 call times: the spread of the repeats
        r["frames_per_s_p80_time"] = r["frames_per_s"] * r["median_ms"] / r["p80_ms"]
        r["frames_per_s_p20_time"] = r["frames_per_s"] * r["median_ms"] / r["p20_ms"]
    ref = {r["provider"]: r for r in rows}.get("cpu-1")
    print(table([(r["provider"], r["median_ms"], r["p20_ms"], r["p80_ms"], r["clips_per_s"], r["frames_per_s"],
                  r["frames_per_s_p80_time"], r["frames_per_s_p20_time"],
                  r["frames_per_s"] / ref["frames_per_s"] if ref else float("nan"),
                  r["mean_abs_err_vs_pyav"]) for r in rows],
                ["provider", "median ms/call", "p20", "p80", "clips/s", "frames/s", "frames/s @p80", "frames/s @p20",
                 "frames/s vs cpu-1",
                 "mean |err| vs PyAV"]))
    print(f"\ncpu-1 = one decoding process; cpu-{workers} = {workers} DataLoader workers on {os.cpu_count()} cores")
    if args.save or args.out:
        path = write_rows([{**r, "clip_frames": clip.frames, "stride": clip.stride, "image_size": list(size),
                            "batch": args.batch,
                            "frame_sizes": m.get("frame_sizes"), "codec": m.get("codec"),
                            "label": args.label} for r in rows],
                          torch.device("cuda" if torch.cuda.is_available() else "cpu"), "bench_decode", args.out)
        print(f"rows appended to {path}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
