"""cjepa data: write video shards (webdataset tar + manifest) from the built-in world or from real CLEVRER.

    cjepa data world --split train --num-videos 1000 --out data/world [world.height=64 world.width=64 ...]
    cjepa data clevrer --root /datasets/clevrer --out data/clevrer --splits train val
    cjepa data verify data/world --split train

Both sources produce the same sample layout (mp4 + json + masks + questions), read by one pipeline
(``data.shards``, ``data.decoder: pyav|dali``). Other sources register a sub-command in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import sys
import time

from cjepa.cli import add_config_args


def _add_world(p) -> None:
    add_config_args(p)
    p.add_argument("--split", default="train", help="split name (directory under --out); default train")
    p.add_argument("--num-videos", type=int, required=True, help="videos to generate")
    p.add_argument("--out", required=True, help="shard root; the split goes to OUT/<split>/")
    p.add_argument("--first-index", type=int, default=0,
                   help="index of the first video (video i depends only on seed, split, i)")
    p.add_argument("--workers", type=int, default=None,
                   help="generator processes (default world.workers; 0 = one per core)")
    p.add_argument("--overwrite", action="store_true", help="replace existing shards of this split")
    p.add_argument("--no-progress", action="store_true")


def _run_world(args) -> int:
    from cjepa.config import load_config
    from cjepa.data.shards import ShardError
    from cjepa.data.world.generate import generate_split
    from cjepa.errors import UserError, check_writable_dir
    from cjepa.utils.report import table

    cfg = load_config(args.config, args.overrides).world
    if args.num_videos < 1:
        raise UserError(f"--num-videos must be >= 1 (got {args.num_videos})")
    check_writable_dir(args.out, "--out")
    print(f"cjepa data world: {args.num_videos} videos x {cfg.num_frames} frames at {cfg.width}x{cfg.height}, "
          f"{cfg.min_objects}-{cfg.max_objects} objects, seed {cfg.seed} -> {args.out}/{args.split}", file=sys.stderr)
    try:
        s = generate_split(cfg, args.split, args.num_videos, args.out, first_index=args.first_index,
                           workers=args.workers,
                           progress=not args.no_progress, overwrite=args.overwrite)
    except ShardError as err:
        print(f"cjepa data world: {err}", file=sys.stderr)
        return 2
    print(table([
        ("videos", s["videos"]),
        ("frames", s["frames"]),
        ("shards", s["shards"]),
        ("size (MB)", s["bytes"] / 1e6),
        ("MB per video", s["bytes"] / 1e6 / s["videos"]),
        ("workers", s["workers"]),
        ("generation s per video (one worker)", s["seconds_per_video"]),
        ("wall time (s)", s["wall_s"]),
        ("directory", s["dir"]),
    ], ["world split", args.split]))
    return 0


def _add_clevrer(p) -> None:
    p.add_argument("--root", required=True,
                   help="CLEVRER directory as published (video_train/, annotation_train/, questions/...)")
    p.add_argument("--out", required=True, help="shard root; each split goes to OUT/<split>/")
    p.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val", "test"])
    p.add_argument("--masks", default=None,
                   help="directory of derender proposals (sim_XXXXX.json); default ROOT/derender_proposals")
    p.add_argument("--shard-size", type=int, default=64, help="videos per shard")
    p.add_argument("--limit", type=int, default=0, help="first N videos per split only (0 = all)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def _run_clevrer(args) -> int:
    from cjepa.data.clevrer import ClevrerLayoutError, convert_clevrer
    from cjepa.data.shards import ShardError
    from cjepa.utils.report import table

    rows = []
    t0 = time.time()
    for split in args.splits:
        try:
            s = convert_clevrer(args.root, args.out, split, shard_size=args.shard_size, masks_dir=args.masks,
                                limit=args.limit,
                                overwrite=args.overwrite, progress=not args.no_progress)
        except (ClevrerLayoutError, ShardError) as err:
            print(f"cjepa data clevrer: {err}", file=sys.stderr)
            return 2
        rows.append((split, s["videos"], s["skipped"], s["shards"], s["bytes"] / 1e6, s["with_masks"],
                     s["with_questions"], s["dir"]))
    print(table(rows, ["split", "videos", "skipped", "shards", "MB", "with masks", "with questions", "directory"]))
    print(f"wall time {time.time() - t0:.1f} s")
    return 0


def _add_verify(p) -> None:
    p.add_argument("root", help="shard root (or a split directory)")
    p.add_argument("--split", default=None, help="split under ROOT (omit when ROOT is the split directory)")


def _run_verify(args) -> int:
    from cjepa.data.shards import ShardError, open_split
    from cjepa.utils.report import table

    try:
        info = open_split(args.root, args.split, verify_checksums=True)
    except ShardError as err:
        print(f"cjepa data verify: {err}", file=sys.stderr)
        return 2
    m = info.manifest or {}
    print(table([
        ("source", m.get("source", "?")),
        ("samples", m.get("num_samples", "?")),
        ("frames", m.get("num_frames", "?")),
        ("shards", len(info.shards)),
        ("with masks", m.get("num_with_masks", "?")),
        ("with questions", m.get("num_with_questions", "?")),
        ("config version", m.get("config_version", "?")),
        ("problems", len(info.problems)),
    ], ["split", info.name]))
    for p in info.problems:
        print(f"  problem: {p}")
    return 1 if info.problems else 0


# name -> (add_arguments, run, help); other data sources (Push-T) add themselves here
SUBCOMMANDS = {
    "world": (_add_world, _run_world,
              "generate built-in physics-world videos (CLEVRER-like, with masks and questions) into shards"),
    "clevrer": (_add_clevrer, _run_clevrer, "convert real CLEVRER (as downloaded) into shards"),
    "verify": (_add_verify, _run_verify, "check a split: manifest, shard files, sizes and sha256 checksums"),
}


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="SOURCE", required=True)
    for name, (add, _run, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        add(sp)


def run(args) -> int:
    return SUBCOMMANDS[args.data_command][1](args)
