"""The VQA reasoner's ceiling on the built-in billiards world: per question type, against the answer priors.

Writes (or reuses) a billiards VQA world with its oracle stores (``cjepa vqa make-billiards --oracle``: true
slots of every simulated frame, the simulator's re-run without each object), trains the ALOE reasoner from
``configs/billiards/vqa_demo.yaml`` plus the given overrides under ``vqa.protocol`` (default ``oracle``),
and appends one JSONL row to ``benchmarks/results/vqa_ceiling_<yyyymmdd>.jsonl``: git SHA, machine, date, the
command, the reasoner's config, its per-type accuracies on the val questions (mean over evaluation offsets),
and the prior baseline (the most frequent training answer per descriptive subtype / multiple-choice type) on
the same questions -- an accuracy at the prior means the reasoner learnt nothing from the slots.

    python benchmarks/vqa_ceiling.py --world runs/vqa_ceiling/world --train 1024 --val 256 \\
        vqa.frame_sampling=span vqa.num_frames=16 vqa.epochs=30

``--observer`` trains nothing: it re-simulates the val scenes and answers every question as a perfect observer of
the frames the reasoner would read (a collision counts if two sampled frames enclose it; the observer knows the
frame indices), per start offset. That is the ceiling any reasoner has under the frame sampling given, and it
shows which answers the frames cannot decide. It also counts how often the explanatory answer (causal ancestry)
differs from "removing the object prevents the collision", the rule the world used before.

``--subtypes RUN`` trains nothing: it scores a finished reasoner run's val predictions per descriptive subtype
(count, exist, query_color) and per multiple-choice type, with the answers it predicted.

``--exist-probe N`` asks whether the reasoner learns at all, on the simplest question the slots decide: "Are there
any <colour> objects?" (the colour is linearly decodable from one slot), over N training scenes of the billiards
dynamics (8 frames spread over 24, 3-6 objects, 7 slots of 16 dims), 300 held-out scenes, validation accuracy
every 250 steps. Too few scenes and the reasoner memorises the training questions instead of reading the slots.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cjepa.utils.report import table  # noqa: E402

TYPES = ("descriptive", "explanatory", "predictive", "counterfactual")
REPORTED = (
    "descriptive",
    "explanatory_per_option",
    "explanatory_per_question",
    "predictive_per_option",
    "predictive_per_question",
    "counterfactual_per_option",
    "counterfactual_per_question",
    "overall",
)


def prior_metrics(train_scenes: list[dict], val_scenes: list[dict]) -> dict[str, float]:
    """Accuracies of answering every val question with the most frequent training answer of its kind
    (descriptive: per subtype; multiple choice: one label per type for every choice)."""
    from cjepa.eval.vqa.metrics import empty_counts, metrics_from_counts
    from cjepa.eval.vqa.questions import TYPE_ID

    freq: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in train_scenes:
        for q in s["questions"]:
            if q["question_type"] == "descriptive":
                freq["descriptive/" + q.get("question_subtype", "")][q["answer"]] += 1
            else:
                freq[q["question_type"]].update(c["answer"] for c in q["choices"])
    best = {k: c.most_common(1)[0][0] for k, c in freq.items()}
    counts = empty_counts()
    for s in val_scenes:
        for q in s["questions"]:
            t = TYPE_ID[q["question_type"]]
            if q["question_type"] == "descriptive":
                ok = best.get("descriptive/" + q.get("question_subtype", "")) == q["answer"]
                counts[t] += (1, ok, 1, ok)
            else:
                right = sum(best.get(q["question_type"]) == c["answer"] for c in q["choices"])
                counts[t] += (1, right == len(q["choices"]), len(q["choices"]), right)
    return metrics_from_counts(counts)


def _pair(i: int, j: int) -> tuple[int, int]:
    return (min(i, j), max(i, j))


def _seen(collisions, frames, ids=None) -> list[tuple[int, int, int]]:
    """(t, i, j) of the collisions two sampled frames enclose (velocities change between t and t + 1)."""
    return [(t, *_pair(*(ids[[i, j]] if ids is not None else (i, j)))) for t, i,
            j in collisions if frames[0] <= t < frames[-1]]


def _ancestors(events, pair) -> set[int]:
    times = [t for t, i, j in events if (i, j) == pair]
    if not times:
        return set()
    reach = set(pair)
    for t, i, j in sorted(events, reverse=True):
        if t < min(times) and (i in reach or j in reach):
            reach |= {i, j}
    return reach - set(pair)


def observer_metrics(args, sampling: str, num_frames: int) -> dict:
    """Per-type accuracy of a perfect observer of the sampled frames on the val questions, mean over start offsets."""
    import numpy as np

    from cjepa.data.billiards_vqa import COLOUR_NAMES, make_scene, scene_questions
    from cjepa.data.synthetic import SlotEmbedding
    from cjepa.eval.vqa.data import frame_indices, num_start_offsets
    from cjepa.eval.vqa.metrics import empty_counts, metrics_from_counts
    from cjepa.eval.vqa.questions import TYPE_ID

    emb = SlotEmbedding(args.slot_dim)
    split_id = sum(ord(ch) for ch in "val")
    starts = num_start_offsets(args.observed, num_frames, sampling)
    counts = empty_counts()
    rule = collections.Counter()
    for i in range(args.val):
        rng = np.random.default_rng([args.seed, split_id, i, 7])
        n = int(rng.integers(args.min_objects, args.max_objects + 1))
        sc = make_scene(10000 + i, rng, emb, num_objects=n, num_slots=args.slots, observed_frames=args.observed,
                        total_frames=args.total, noise=0.0)
        names = {COLOUR_NAMES[int(c)]: k for k, c in enumerate(sc.video.colours)}
        for q in scene_questions(sc, rng):
            kind = q["question_type"]
            words = q["question"].rstrip("?").split()
            for start in range(starts):
                fr = frame_indices(start, args.observed, 0, args.observed, num_frames, sampling)
                seen = _seen(sc.video.collisions, fr)
                if kind == "descriptive":
                    sub = q.get("question_subtype")
                    if sub == "count":
                        got = str(min(len({(i, j) for _, i, j in seen}), 5))
                    elif sub == "exist":
                        got = "yes" if words[3] in names else "no"
                    else:
                        k = names[words[-2]]
                        partners = {i + j - k for _, i, j in seen if k in (i, j)}
                        got = COLOUR_NAMES[int(sc.video.colours[partners.pop()])] if len(partners) == 1 else ""
                    ok = got == q["answer"]
                    counts[TYPE_ID[kind]] += (1, ok, 1, ok)
                    continue
                if kind == "predictive":
                    fr_p = frame_indices(start, args.total, TYPE_ID[kind], args.observed, num_frames, sampling)
                    later = {(i, j) for t, i, j in _seen(sc.video.collisions, fr_p) if t >= args.observed - 1}
                    truth = lambda c: _pair(*(names[w] for w in c["choice"].split() if w in names)) in later
                elif kind == "counterfactual":
                    x = names[next(w for w in words if w in names)]
                    keep = np.array([k for k in range(n) if k != x])
                    cf = {(i, j) for _, i, j in _seen(sc.reruns[x].collisions, fr, keep)}
                    truth = lambda c: _pair(*(names[w] for w in c["choice"].split() if w in names)) in cf  # noqa: E731
                else:
                    a, b = (names[w] for w in words if w in names)
                    causes = _ancestors(seen, _pair(a, b))
                    truth = lambda c: names[c["choice"].split()[-2]] in causes  # noqa: E731
                right = sum(truth(c) == (c["answer"] == "correct") for c in q["choices"])
                counts[TYPE_ID[kind]] += (1, right == len(q["choices"]), len(q["choices"]), right)
            if kind == "explanatory":
                a, b = (names[w] for w in words if w in names)
                for c in q["choices"]:
                    k = names[c["choice"].split()[-2]]
                    rule[(c["answer"] == "correct") == (_pair(a, b) not in sc.counterfactual[k])] += 1
    out = metrics_from_counts(counts)
    out["explanatory_removal_rule_agreement"] = rule[True] / max(1, rule[True] + rule[False])
    return out


def exist_probe(num_train: int, steps: int, seed: int = 0) -> list[dict]:
    """Validation accuracy of the ALOE reasoner (d_model 64, depth 2) trained on exist questions only."""
    import numpy as np
    import torch

    from cjepa.data.billiards_vqa import COLOUR_NAMES
    from cjepa.data.synthetic import SlotEmbedding, integrate_billiards, sample_initial_state
    from cjepa.eval.vqa.model import ALOEReasoner, reasoner_losses
    from cjepa.eval.vqa.text import Vocab

    frames, slots, dim, val = 8, 7, 16, 300
    emb, rng = SlotEmbedding(dim), np.random.default_rng(seed)

    def scene():
        n = int(rng.integers(3, 7))
        pos, vel, radii, colours = sample_initial_state(n, rng)
        video = integrate_billiards(pos, vel, radii, colours, frames * 3, 2)
        x = np.tile(emb.empty, (frames, slots, 1))
        x[:, rng.permutation(slots)[:n]] = emb(video)[::3]
        c = int(rng.integers(len(COLOUR_NAMES)))
        answer = "yes" if c in {int(k) for k in colours} else "no"
        return x + rng.normal(0, 0.02, x.shape), f"Are there any {COLOUR_NAMES[c]} objects?", answer

    data = [scene() for _ in range(num_train + val)]
    vocab = Vocab.build([d[1] for d in data], [d[2] for d in data])
    video = torch.tensor(np.stack([d[0] for d in data]), dtype=torch.float32)  # (N, frames, slots, dim)
    enc = [vocab.encode(d[1], 32) for d in data]
    tokens, pad = torch.tensor(np.stack([e[0] for e in enc])), torch.tensor(np.stack([e[1] for e in enc]))
    label = torch.tensor([vocab.answer_id(d[2]) for d in data])
    torch.manual_seed(seed)
    model = ALOEReasoner(num_words=vocab.num_words, num_answers=vocab.num_answers, slot_dim=dim, num_slots=slots,
                         num_frames=frames,
                         question_len=20, choice_len=12, word_dim=12, heads=4, depth=2, ffn_dim=64, dropout=0.0,
                         head_hidden=64)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    pick = np.random.default_rng(seed + 1)
    held = torch.arange(num_train, num_train + val)
    curve = []
    for step in range(1, steps + 1):
        i = torch.as_tensor(pick.choice(num_train, 32))
        mc = torch.zeros(32, dtype=torch.bool)
        loss = reasoner_losses(model(video[i], torch.arange(32), tokens[i], pad[i], mc), label[i], mc)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0:
            with torch.no_grad():
                out = model(video[held], torch.arange(val), tokens[held], pad[held], torch.zeros(val, dtype=torch.bool))
            acc = (out["answer_logits"].argmax(1) == label[held]).float().mean().item()
            curve.append({"step": step, "train_loss": round(loss.item(), 4), "val_accuracy": round(acc, 4)})
            print(curve[-1], flush=True)
    prior = max(float((label[held] == label[held].mode().values).float().mean()), 0.0)
    return [{"prior_on_val": round(prior, 4)}, *curve]


def ensure_world(world: Path, args) -> dict:
    """The world's question counts; written first if ``world`` holds none (same arguments -> same world)."""
    from cjepa.data.billiards_vqa import write_billiards_vqa

    spec = {k: getattr(args,
                       k) for k in ("train", "val", "observed", "total", "slots", "slot_dim", "min_objects",
                                    "max_objects", "seed")}
    marker = world / "ceiling_world.json"
    if marker.is_file():
        saved = json.loads(marker.read_text())
        if saved["spec"] != spec:
            raise SystemExit(f"{world} holds another world {saved['spec']}; asked for {spec}: use another --world")
        return saved
    t0 = time.time()
    summary = write_billiards_vqa(
        world, {"train": args.train, "val": args.val}, num_slots=args.slots, slot_dim=args.slot_dim,
        observed_frames=args.observed,
        total_frames=args.total, min_objects=args.min_objects, max_objects=args.max_objects, seed=args.seed,
        oracle=True,
    )
    saved = {"spec": spec, "summary": summary, "seconds": round(time.time() - t0, 1)}
    marker.write_text(json.dumps(saved))
    return saved


def reasoner_config(world: Path, run_dir: Path, args, overrides: list[str]):
    from cjepa.config import load_config
    from cjepa.paths import config_path

    cfg = load_config([str(config_path("billiards/vqa_demo.yaml"))], overrides)
    v = cfg.vqa
    v.questions_train, v.questions_val = str(world / "questions" / "train.json"), str(world / "questions" / "val.json")
    v.annotations = str(world / "annotations.json")
    oracle = v.protocol == "oracle"
    v.slots = str(world / "oracle" / "slots") if oracle else str(world / "slots")
    if oracle:
        v.cf_slots = str(world / "oracle" / "counterfactual")
    elif v.protocol != "original":
        raise SystemExit(f"vqa.protocol={v.protocol}: this benchmark runs oracle or original (observed slots only)")
    if not oracle:
        v.video_len = args.observed  # no rollout: predictive questions read the last observed frames
    cfg.run.out_dir, cfg.run.name = str(run_dir.parent), run_dir.name
    return cfg


def pct(x) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}"


def provenance(argv) -> dict:
    import torch

    from cjepa.utils.run_dir import git_info

    g = git_info()
    return {
        "git_sha": g["sha"],
        "git_dirty": g["dirty"],
        "machine": f"{platform.node()} {platform.machine()} ({os.cpu_count()} cpus, {torch.get_num_threads()} torch "
        "threads)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/vqa_ceiling.py "
        + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:])),
    }


def append_row(a, row: dict) -> Path:
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"vqa_ceiling_{time.strftime('%Y%m%d')}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    return out


def accuracy_by_subtype(questions: list[dict], predictions: list[dict]) -> dict[str, dict]:
    """Per descriptive subtype (accuracy per question) and per multiple-choice type (accuracy per option): the
    number scored, the accuracy and the predicted answers' counts -- which kinds a reasoner has learnt, and which
    it answers with a constant. Both lists are CLEVRER-schema scenes; predictions as the evaluation writes them,
    matched as :func:`cjepa.eval.vqa.metrics.score_predictions` matches them (a missing one counts wrong)."""
    from cjepa.eval.vqa.metrics import answer_pairs

    right: dict[str, list[bool]] = collections.defaultdict(list)
    answers: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for q, pairs in answer_pairs(questions, predictions):
        kind = q["question_subtype"] if q["question_type"] == "descriptive" else q["question_type"]
        for pred, truth in pairs:
            right[kind].append(pred == truth)
            answers[kind][pred] += 1
    return {k: {"scored": len(v), "accuracy": sum(v) / len(v), "answers": dict(answers[k].most_common())}
            for k, v in right.items()}


def subtypes(a, argv) -> int:
    """Score a trained reasoner's val predictions per question subtype; one row."""
    import yaml

    from cjepa.eval.vqa.questions import load_question_file

    run = Path(a.subtypes)
    v = (yaml.safe_load((run / "config.yaml").read_text()) or {})["vqa"]
    pred_file = run / f"predictions_val_{v['protocol']}.json"
    if not pred_file.is_file():
        raise SystemExit(f"{pred_file} not found: --subtypes needs a finished reasoner run (its val predictions)")
    acc = accuracy_by_subtype(load_question_file(v["questions_val"]), json.loads(pred_file.read_text()))
    row = {"benchmark": "vqa_ceiling_subtypes", **provenance(argv), "note": a.note, "run_dir": str(run),
           "predictions": str(pred_file), "by_subtype": acc}
    out = append_row(a, row)
    print(table([(k, r["scored"], pct(r["accuracy"]), ", ".join(f"{n} {c}" for n, c in list(r["answers"].items())[:3]))
                 for k, r in acc.items()], ["kind", "scored", "accuracy (%)", "most predicted"]))
    print(f"row appended to {out}")
    return 0


def observe(a, overrides: list[str], argv) -> int:
    from cjepa.config import load_config

    v = load_config([], overrides).vqa
    spec = {k: getattr(a,
                       k) for k in ("val", "observed", "total", "slots", "slot_dim", "min_objects", "max_objects",
                                    "seed")}
    m = observer_metrics(a, v.frame_sampling, v.num_frames)
    row = {"benchmark": "vqa_ceiling_observer", **provenance(argv), "note": a.note, "world": spec,
           "frame_sampling": v.frame_sampling, "num_frames": v.num_frames, "metrics": {k: m.get(k) for k in REPORTED},
           "explanatory_removal_rule_agreement": m["explanatory_removal_rule_agreement"]}
    out = append_row(a, row)
    print(table([(k, pct(row["metrics"][k])) for k in REPORTED],
                ["metric (%)", f"observer, {v.frame_sampling} {v.num_frames} frames"]))
    print("explanatory: causal ancestry agrees with the removal rule on "
          f"{pct(m['explanatory_removal_rule_agreement'])} % of choices")
    print(f"row appended to {out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", default="runs/vqa_ceiling/world", help="world directory (written if empty)")
    p.add_argument("--runs", default="runs/vqa_ceiling", help="reasoner run directories go here")
    p.add_argument("--train", type=int, default=1024, help="training scenes")
    p.add_argument("--val", type=int, default=256, help="validation scenes")
    p.add_argument("--observed", type=int, default=48, help="observed frames (as the demo's rollout.obs_frames)")
    p.add_argument("--total", type=int, default=64, help="simulated frames (as the demo's rollout.target_frames)")
    p.add_argument("--slots", type=int, default=7)
    p.add_argument("--slot-dim", type=int, default=64)
    p.add_argument("--min-objects", type=int, default=3)
    p.add_argument("--max-objects", type=int, default=6)
    p.add_argument("--seed", type=int, default=0, help="world seed")
    p.add_argument("--name", default="", help="run name (default: from the overrides)")
    p.add_argument("--note", default="", help="stored with the row (e.g. how loaded the machine was)")
    p.add_argument("--out", default="",
                   help="JSONL to append to (default benchmarks/results/vqa_ceiling_<yyyymmdd>.jsonl)")
    p.add_argument("--observer", action="store_true",
                   help="no training: a perfect observer of the sampled frames (see above)")
    p.add_argument("--exist-probe", type=int, default=0, metavar="N",
                   help="no world: the exist-question probe on N scenes")
    p.add_argument("--probe-steps", type=int, default=1500)
    p.add_argument("--subtypes", default="", metavar="RUN",
                   help="no training: score RUN's val predictions per question subtype")
    p.add_argument("overrides", nargs="*",
                   help="config overrides on configs/billiards/vqa_demo.yaml (vqa.protocol=oracle is the default)")
    a = p.parse_args(argv)

    from cjepa.eval.vqa.questions import load_question_file
    from cjepa.eval.vqa.reasoner import train_reasoner

    overrides = ["vqa.protocol=oracle", "run.seed=0", *a.overrides]
    if a.observer:
        return observe(a, overrides, argv)
    if a.subtypes:
        return subtypes(a, argv)
    if a.exist_probe:
        t0 = time.time()
        prior, *curve = exist_probe(a.exist_probe, a.probe_steps, a.seed)
        row = {"benchmark": "vqa_exist_probe", **provenance(argv), "note": a.note, "train_scenes": a.exist_probe,
               **prior,
               "curve": curve, "seconds": round(time.time() - t0, 1)}
        print(f"row appended to {append_row(a, row)}")
        return 0
    world = Path(a.world)
    w = ensure_world(world, a)
    name = a.name or (
        "ceiling_" + "_".join(o.split(".")[-1].replace("=", "") for o in a.overrides) if a.overrides else "ceiling"
    )
    run_dir = Path(a.runs) / name
    cfg = reasoner_config(world, run_dir, a, overrides)
    started = provenance(argv)  # the code that trains is the code at the start, whatever is committed meanwhile
    t0 = time.time()
    summary = train_reasoner(cfg, progress=False)
    seconds = time.time() - t0
    fe = summary["final_eval"]
    prior = prior_metrics(load_question_file(cfg.vqa.questions_train), load_question_file(cfg.vqa.questions_val))
    row = {
        "benchmark": "vqa_ceiling",
        **started,
        "note": a.note,
        "world": w["spec"],
        "world_questions": w["summary"],
        "config": {"vqa": {k: getattr(cfg.vqa, k) for k in (
            "protocol", "frame_sampling", "video_len", "num_frames", "word_dim", "heads", "depth", "ffn_dim", "dropout",
            "lr",
            "batch_size", "epochs", "max_steps", "warmup_frac", "min_lr_ratio", "grad_clip", "token_layout",
            "slot_loss_weight", "slot_mask_ratio")},
            "run.seed": cfg.run.seed},
        "steps": summary.get("steps"),
        "train_seconds": round(seconds, 1),
        "metrics": {k: fe["metrics"].get(k) for k in REPORTED},
        "metrics_std_over_offsets": {k: fe["metrics_std"].get(k) for k in REPORTED},
        "prior": {k: prior.get(k) for k in REPORTED},
        "val_questions": {t: fe["metrics"].get(f"{t}_questions") for t in TYPES},
        "run_dir": str(run_dir),
    }
    out = append_row(a, row)
    print(table([(k, pct(row["metrics"][k]), pct(row["prior"][k])) for k in REPORTED],
                ["metric (%)", cfg.vqa.protocol, "prior"]))
    print(f"\n{seconds:.0f} s training; row appended to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
