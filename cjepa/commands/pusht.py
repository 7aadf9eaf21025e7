"""cjepa pusht: generate the Push-T dataset (scripted-expert and random-exploration episodes).

Writes, under ``data.pusht.out``: rendered video shards with per-step state/proprio/action and instance masks
(``videos/<split>/``, through cjepa.data.shards.ShardWriter) and a state-slot store (``slots/``) that trains a
Push-T predictor without any pixel encoder. The state-slot store resumes per episode; video shards of a split
are written in one go (``--overwrite`` replaces existing ones). Ends with a table of episode counts, frames and
the scripted expert's success rate.
"""

from __future__ import annotations

import sys
import time

from cjepa.cli import add_config_args

FPS = 10  # Push-T control rate


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--out", default=None, help="output root (overrides data.pusht.out)")
    p.add_argument("--no-videos", action="store_true", help="skip rendering and video shards (state-slot store only)")
    p.add_argument("--overwrite", action="store_true", help="replace existing video shards of a split")


def run(args) -> int:
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from cjepa.config import load_config
    from cjepa.data.pusht import (
        BRANCH_KINDS,
        BRANCH_NORMAL,
        EXPERT,
        RANDOM,
        StateSlotEmbedding,
        generate_branch_episode,
        generate_episode,
        shard_writer_class,
        store_action_stats,
        write_state_slot_store,
        write_video_shards,
    )
    from cjepa.envs.pusht import PushTEnv
    from cjepa.utils.report import table

    cfg = load_config(args.config, args.overrides)
    pt = cfg.data.pusht
    out = Path(args.out or pt.out)
    videos = pt.videos and not args.no_videos
    if not (videos or pt.state_slots):
        print("cjepa pusht: nothing to write (data.pusht.videos and data.pusht.state_slots are both off)",
              file=sys.stderr)
        return 2
    writer_cls = None
    if videos:
        try:
            writer_cls = shard_writer_class()
        except ImportError as err:
            print(f"cjepa pusht: {err}", file=sys.stderr)
            return 2
    embedding = StateSlotEmbedding(cfg.model.slot_dim, pt.background_slots)
    branch_kind = BRANCH_KINDS[pt.branch_policy]
    # Branch episodes come after the train split's expert and random ones: the "normal" policy draws from
    # their action statistics, read back from the store once those are written.
    counts = {"train": ((EXPERT, pt.expert_train), (RANDOM, pt.random_train), (branch_kind, pt.branch_train)),
              "val": ((EXPERT, pt.expert_val), (RANDOM, pt.random_val))}
    total = sum(n for kinds in counts.values() for _, n in kinds)
    bar = tqdm(total=total, desc="pusht episodes", unit="ep", file=sys.stderr, dynamic_ncols=True)
    env = PushTEnv(pt.render_size)
    gen_kw = dict(seed=pt.seed, expert_max_steps=pt.expert_max_steps, expert_max_step=pt.expert_max_step,
                  random_steps=pt.random_steps,
                  render_size=pt.render_size if videos else None, masks=pt.masks and videos, env=env)
    stats: dict[tuple[str, str], dict] = {}
    branch_stats: dict[str, list] = {}
    t0 = time.time()
    for split, kinds in counts.items():
        if not any(n for _, n in kinds):
            continue
        shard_writer = None
        if writer_cls is not None:
            shard_writer = writer_cls(out / "videos", split, shard_size=pt.shard_size, source="pusht", fps=FPS,
                                      generator={"name": "cjepa pusht", "seed": pt.seed}, overwrite=args.overwrite)
        existing = _existing_slot_keys(out / "slots", split) if (pt.state_slots and shard_writer is None) else set()

        def episode_maker(kind, split):
            """index -> episode of ``kind``; the "normal" branch policy first reads the action statistics of the
            episodes already in the store (the groups written before its own)."""
            if kind not in BRANCH_KINDS.values():
                return lambda i: generate_episode(kind, i, split=split, **gen_kw)
            kw = {}
            if kind == BRANCH_NORMAL:
                mean, std = store_action_stats(out / "slots", split)
                branch_stats["action_mean"], branch_stats["action_std"] = mean.tolist(), std.tolist()
                kw = {"action_mean": mean, "action_std": std}
            return lambda i: generate_branch_episode(
                pt.branch_policy, i, expert_count=pt.expert_train, steps=pt.branch_steps, split=split, seed=pt.seed,
                expert_max_steps=pt.expert_max_steps, expert_max_step=pt.expert_max_step,
                render_size=gen_kw["render_size"], masks=gen_kw["masks"], env=env, **kw)

        def episodes(kinds):
            for kind, n in kinds:
                if n == 0:
                    continue
                make = episode_maker(kind, split)
                st = stats.setdefault((split, kind),
                                      {"episodes": n, "frames": 0, "reached": 0, "steps": [], "skipped": 0})
                for i in range(n):
                    if f"{kind}_{i:06d}" in existing:  # resumed: already in the store
                        st["skipped"] += 1
                        bar.update(1)
                        continue
                    ep = make(i)
                    st["frames"] += ep.num_frames
                    st["reached"] += ep.reached_goal
                    st["steps"].append(ep.num_frames - 1)
                    if shard_writer is not None:
                        write_video_shards(shard_writer, [ep])
                    bar.update(1)
                    yield ep

        # Groups written one after the other: a branch group reads the store written by the groups before it.
        groups = [[k for k in kinds if k[0] not in BRANCH_KINDS.values()],
                  [k for k in kinds if k[0] in BRANCH_KINDS.values()]]
        for group in groups:
            if not any(n for _, n in group):
                continue
            if pt.state_slots:
                write_state_slot_store(episodes(group), out / "slots", split, embedding, noise=pt.slot_noise,
                                       seed=pt.seed)
            else:
                for _ in episodes(group):
                    pass
        if shard_writer is not None:
            shard_writer.close()
    bar.close()
    rows = []
    for (split, kind), st in stats.items():
        made = st["episodes"] - st["skipped"]
        mean_steps = float(np.mean(st["steps"])) if st["steps"] else 0.0
        rows.append((split, kind, st["episodes"], st["skipped"], st["frames"], mean_steps,
                     f"{100.0 * st['reached'] / made:.1f}%" if kind == EXPERT and made else "-"))
    print(table(rows,
                ["split", "kind", "episodes", "already stored", "frames written", "mean steps", "expert reached goal"]))
    if branch_stats:
        print(f"branch_normal actions ~ N(mean {branch_stats['action_mean']}, std {branch_stats['action_std']}) "
              "per dimension (the store's expert + random train actions)")
    where = [f"state-slot store: {out / 'slots'}"] if pt.state_slots else []
    if videos:
        where.append(f"video shards: {out / 'videos'}")
    print("\n" + "\n".join(where) + f"\nwall time {time.time() - t0:.1f} s")
    return 0


def _existing_slot_keys(root, split: str) -> set[str]:
    from cjepa.data.slot_store import SlotSplit, SlotStoreError

    try:
        return set(SlotSplit(root, split))
    except SlotStoreError:  # no store (or no such split) yet
        return set()
