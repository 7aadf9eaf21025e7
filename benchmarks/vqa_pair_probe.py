"""Are collisions readable from the frames the reasoner gets? A probe that is told which two slots to look at.

For every choice "The <a> object collides with the <b> object" of the predictive (or counterfactual) questions of
a billiards VQA world made with ``--oracle``, the probe takes the slots of objects a and b -- found through the
store's per-slot ``object_ids`` and the annotations' colours, i.e. the binding of words to slots given for free --
in the frames the reasoner would read (``vqa.frame_sampling=span``: ``--frames`` frames spread over the observed
span; predictive questions shifted onto the simulator's future, counterfactual ones read the simulator's re-run
without the removed object), and trains a small MLP on those 2 x frames slot vectors to say whether the pair
collides. Its val accuracy against the prior tells whether the answer is in those frames at all; the reasoner
(``benchmarks/vqa_ceiling.py``) must in addition find the two objects from the words, on its own.

    python benchmarks/vqa_pair_probe.py --world runs/vqa_ceiling/world4096 --type predictive --frames 8

Appends one row per run to ``benchmarks/results/vqa_ceiling_<yyyymmdd>.jsonl`` (``benchmark: vqa_pair_probe``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cjepa.data.billiards_vqa import cf_key  # noqa: E402
from cjepa.data.slot_store import open_split  # noqa: E402
from cjepa.utils.run_dir import git_info  # noqa: E402


def pair_colours(choice: str) -> tuple[str, str]:
    """'The red object collides with the blue object' -> ('red', 'blue')."""
    words = choice.lower().rstrip(".").split()
    if len(words) != 8 or words[2:5] != ["object", "collides", "with"]:
        raise ValueError(f"not a collision choice: {choice!r}")
    return words[1], words[6]


def removed_colour(question: str) -> str:
    """'Which of the following will happen if the cyan object is removed?' -> 'cyan'."""
    words = question.lower().rstrip("?").split()
    return words[words.index("removed") - 3]


def span_frames(video_len: int, frames: int, shift: int = 0) -> np.ndarray:
    return shift + np.rint(np.linspace(0, video_len - 1, frames)).astype(np.int64)


def choice_examples(world: Path, split: str, qtype: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(X (choices, frames, 2 D) float32, y (choices,) bool): the named pair's slots and whether it collides."""
    observed = open_split("store", world / "slots", split)
    future = open_split("store", world / "oracle" / "slots", split)
    reruns = open_split("store", world / "oracle" / "counterfactual", split) if qtype == "counterfactual" else None
    colours = {a["scene_index"]: {o["color"]: o["object_id"] for o in a["object_property"]}
               for a in json.loads((world / "annotations.json").read_text())}
    xs, ys = [], []
    for scene in json.loads((world / "questions" / f"{split}.json").read_text()):
        key = scene["video_filename"]
        ids = np.asarray(observed.extra(key, "object_ids"))[0]  # (S,) instance id per slot: object k -> k + 1
        video_len = len(observed[key])
        by_colour = colours[scene["scene_index"]]
        for q in scene["questions"]:
            if q["question_type"] != qtype:
                continue
            if qtype == "predictive":
                arr = np.asarray(future[key])
                idx = span_frames(video_len, frames, len(arr) - video_len)
            else:
                arr = np.asarray(reruns[cf_key(key, by_colour[removed_colour(q["question"])])])
                idx = span_frames(video_len, frames)
            for c in q["choices"]:
                a, b = (int(np.flatnonzero(ids == by_colour[col] + 1)[0]) for col in pair_colours(c["choice"]))
                xs.append(np.concatenate([arr[idx, a], arr[idx, b]], axis=-1))  # (frames, 2 D)
                ys.append(c["answer"] == "correct")
    return np.stack(xs).astype(np.float32), np.asarray(ys)


def train_probe(xtr, ytr, xva, yva, *, epochs: int, seed: int, hidden: int = 256) -> list[dict]:
    """MLP on the flattened pair window, Adam, BCE; val accuracy every 10 epochs."""
    torch.manual_seed(seed)
    xtr, xva = torch.from_numpy(xtr).flatten(1), torch.from_numpy(xva).flatten(1)
    ytr, yva = torch.from_numpy(ytr).float(), torch.from_numpy(yva).float()
    net = torch.nn.Sequential(torch.nn.Linear(xtr.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
                              torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
    curve = []
    for epoch in range(1, epochs + 1):
        for j in torch.randperm(len(ytr)).split(64):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xtr[j]).squeeze(-1), ytr[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 10 == 0 or epoch == epochs:
            with torch.no_grad():
                acc = lambda x, y: ((net(x).squeeze(-1) > 0).float() == y).float().mean().item()  # noqa: E731
                curve.append({"epoch": epoch, "train": acc(xtr, ytr), "val": acc(xva, yva)})
    return curve


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", required=True, help="a billiards VQA world written with --oracle")
    p.add_argument("--type", choices=("predictive", "counterfactual"), default="predictive")
    p.add_argument("--frames", type=int, default=8, help="frames spread over the observed span (vqa.num_frames)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default="")
    p.add_argument("--out", default=None,
                   help="JSONL to append to (default benchmarks/results/vqa_ceiling_<date>.jsonl)")
    a = p.parse_args(argv)
    world = Path(a.world)
    if not (world / "oracle" / "slots").is_dir():
        print(f"vqa_pair_probe: {world} has no oracle stores; write it with `cjepa vqa make-billiards --oracle`",
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    t0 = time.time()
    xtr, ytr = choice_examples(world, "train", a.type, a.frames)
    xva, yva = choice_examples(world, "val", a.type, a.frames)
    curve = train_probe(xtr, ytr, xva, yva, epochs=a.epochs, seed=a.seed)
    prior = float(max(ytr.mean(), 1 - ytr.mean()))  # the training majority answer, scored on val
    prior_val = float(np.mean(yva == (ytr.mean() >= 0.5)))
    g = git_info(ROOT)
    row = {
        "benchmark": "vqa_pair_probe", "git_sha": g["sha"], "git_dirty": g["dirty"],
        "machine": f"{platform.node()} {platform.machine()} ({os.cpu_count()} cpus, 1 torch thread)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "note": a.note,
        "command": "python benchmarks/vqa_pair_probe.py " + " ".join(shlex.quote(x) for x in argv),
        "world": str(world), "type": a.type, "frames": a.frames, "epochs": a.epochs, "seed": a.seed,
        "train_choices": len(ytr), "val_choices": len(yva), "prior_train": prior, "prior_val": prior_val,
        "val_final": curve[-1]["val"], "val_best": max(c["val"] for c in curve), "curve": curve,
        "seconds": time.time() - t0,
    }
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"vqa_ceiling_{time.strftime('%Y%m%d')}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(f"{a.type}, {a.frames} frames: val {100 * row['val_final']:.1f} % (best {100 * row['val_best']:.1f} %) "
          f"against the prior {100 * prior_val:.1f} %, {len(ytr)} training choices; row in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
