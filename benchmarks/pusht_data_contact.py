"""How often does the agent move the block in each kind of Push-T training episode? (CPU, seconds.)

A world model learns the block's dynamics only from steps where the agent pushes it. For every episode kind of a
state-slot store split (``expert``, ``random``, ``branch_normal``, ``branch_explore``: the key's prefix), this
counts, from the recorded states:

* ``steps_block_moves``: the fraction of env steps after which the block has moved (centre > ``--move-px`` px or
  angle > ``--move-rad``); the block is quasi-static (no velocity kept between steps), so it moves only while
  the agent touches it;
* over every window of ``--window`` steps (the planning horizon: 5 blocks of 5 steps), sliding by
  ``--stride``: the fraction of windows in which the block moves at all, and in which its centre ends at least
  ``--far-px`` px from where it started, and the quantiles of that displacement (px) and rotation (rad);
  ``--first-window`` keeps only each episode's first window (for a branch episode: the ``--window`` steps
  from the expert state it starts at, as a plan starts from a pair's state).

Appends one JSON record (git SHA, machine, date, argv) to ``--out``.

    python benchmarks/pusht_data_contact.py --dataset runs/pusht/slots --out benchmarks/results/planner/contact.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.oracle_diagnosis import append_record, provenance, quantiles  # noqa: E402


def episode_kind(key: str) -> str:
    """``branch_normal_000012`` -> ``branch_normal``."""
    m = re.fullmatch(r"(.+)_\d+", key)
    return m.group(1) if m else key


def block_motion(states: np.ndarray, window: int, stride: int, move_px: float, move_rad: float,
                 first_window: bool = False) -> dict:
    """(T, 7) states -> per-step block-moved flags (T-1,) and, per window of ``window`` steps, the block's
    displacement (px), rotation (rad) and whether it moved at any step inside."""
    from cjepa.envs.pusht import angle_error

    s = np.asarray(states, np.float64)
    step_px = np.linalg.norm(np.diff(s[:, 2:4], axis=0), axis=1)
    step_rad = np.abs(angle_error(s[1:, 4], s[:-1, 4]))
    moved = (step_px > move_px) | (step_rad > move_rad)
    starts = range(0, min(len(s) - window, 1 if first_window else len(s)), stride)
    disp = [float(np.linalg.norm(s[i + window, 2:4] - s[i, 2:4])) for i in starts]
    rot = [float(abs(angle_error(s[i + window, 4], s[i, 4]))) for i in starts]
    any_move = [bool(moved[i:i + window].any()) for i in starts]
    return {"moved": moved, "disp": disp, "rot": rot, "any": any_move}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, help="state-slot store root")
    p.add_argument("--split", default="train")
    p.add_argument("--window", type=int, default=25)
    p.add_argument("--stride", type=int, default=5)
    p.add_argument("--move-px", type=float, default=0.5)
    p.add_argument("--move-rad", type=float, default=0.005)
    p.add_argument("--far-px", type=float, default=10.0)
    p.add_argument("--first-window", action="store_true", help="only the first window of each episode")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    from cjepa.data.slot_store import SlotSplit

    data = SlotSplit(args.dataset, args.split)
    acc: dict[str, dict] = {}
    for key in sorted(data):
        m = block_motion(data.extra(key, "state"), args.window, args.stride, args.move_px, args.move_rad,
                         args.first_window)
        a = acc.setdefault(episode_kind(key), {"episodes": 0, "moved": [], "disp": [], "rot": [], "any": []})
        a["episodes"] += 1
        for k in ("moved", "disp", "rot", "any"):
            a[k].extend(np.asarray(m[k]).tolist())
    kinds = {}
    for kind, a in acc.items():
        disp = np.asarray(a["disp"])
        kinds[kind] = {"episodes": a["episodes"], "steps": len(a["moved"]),
                       "steps_block_moves": float(np.mean(a["moved"])) if a["moved"] else float("nan"),
                       "windows": len(disp),
                       "windows_block_moves": float(np.mean(a["any"])) if len(disp) else float("nan"),
                       f"windows_block_displaced_ge_{args.far_px:g}px":
                           float(np.mean(disp >= args.far_px)) if len(disp) else float("nan"),
                       "window_displacement_px": quantiles(disp) if len(disp) else None,
                       "window_rotation_rad": quantiles(a["rot"]) if len(disp) else None}
    record = {**provenance(sys.argv if argv is None else ["pusht_data_contact.py", *argv]),
              "kind": "data_contact", "dataset": args.dataset, "split": args.split, "window": args.window,
              "stride": args.stride,
              "first_window": args.first_window, "move_px": args.move_px, "move_rad": args.move_rad, "kinds": kinds}
    for kind, k in kinds.items():
        print(f"{kind:16s} episodes {k['episodes']:5d}  steps with block moving {k['steps_block_moves']:.3f}  "
              f"{args.window}-step windows: block moves {k['windows_block_moves']:.3f}, "
              f">= {args.far_px:g} px {k[f'windows_block_displaced_ge_{args.far_px:g}px']:.3f}, "
              f"median displacement {k['window_displacement_px']['median']:.1f} px")
    if args.out:
        append_record(args.out, record)
    else:
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
