"""Simple rollout baselines next to copy-last on the held-out windows the predictor is scored on.

On the same windows as the predictor's rollout error (:func:`cjepa.eval.rollout.rollout_error`: T_h history
frames at frameskip fs, then ``chains * T_p`` future steps), per rollout step, the MSE / copy-last MSE of

- constant velocity: the last observed frame plus k times the last observed change (slot space),
- the best linear predictor: per step k, a ridge least-squares map from a slot's T_h history frames to its change
  from the last frame, shared by all slots and fitted on every window of the training videos,

and, where the slots are the built-in slot world's, the observation-noise floor (the error of a predictor that knows
the noise-free future exactly, divided by copy-last's) and where copy-last's error comes from: per step, the fraction
of object slots whose velocity changed since the last observed frame (a wall bounce or a collision), the share of
copy-last's error on those slots, and each baseline's ratio on the slots with and without such an event. If linear
extrapolation beats copy-last where the transformer does not, the transformer is mis-trained; if nothing linear
does, the history does not determine the step. One JSONL row per run goes to ``benchmarks/results/``.

    python benchmarks/predictor_baselines.py -c configs/world/demo_slots.yaml
    python benchmarks/predictor_baselines.py -c configs/world/demo.yaml data.path=runs/demo/slots
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cjepa.config import load_config  # noqa: E402
from cjepa.data.synthetic import synthetic_videos_from_config  # noqa: E402
from cjepa.eval.rollout import eval_windows  # noqa: E402
from cjepa.tasks.predictor import load_slot_splits  # noqa: E402
from cjepa.utils.report import table  # noqa: E402
from cjepa.utils.run_dir import git_info  # noqa: E402


def windows(videos, history: int, horizon: int, frameskip: int, per_video: int | None,
            max_videos: int | None = None) -> np.ndarray:
    """(W, T_h + horizon, S, D) windows at frameskip; ``per_video=None`` takes every start frame (training fit),
    otherwise the evenly spaced starts of the rollout evaluation."""
    needed = (history + horizon - 1) * frameskip + 1
    out = []
    for key in list(videos.keys())[:max_videos]:
        v = np.asarray(videos[key], dtype=np.float32)
        starts = range(len(v) - needed + 1) if per_video is None else eval_windows(len(v), needed, per_video)
        for s in starts:
            out.append(v[s + frameskip * np.arange(history + horizon)])
    if not out:
        raise ValueError(f"no video is long enough for a window of {needed} frames")
    return np.stack(out)


def fit_linear(train: np.ndarray, history: int, ridge: float) -> np.ndarray:
    """Ridge map (T_h*D + 1, horizon*D): a slot's history frames (and 1) -> its change from the last frame."""
    W, T, S, D = train.shape
    x = train[:, :history].transpose(0, 2, 1, 3).reshape(W * S, history * D).astype(np.float64)  # (W*S, T_h*D)
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    last = train[:, history - 1]  # (W, S, D)
    y = (train[:, history:] - last[:, None]).transpose(0, 2, 1, 3).reshape(W * S, -1).astype(np.float64)
    gram = x.T @ x + ridge * len(x) * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ y)


def predict_linear(coef: np.ndarray, hist: np.ndarray, horizon: int) -> np.ndarray:
    """hist (W, T_h, S, D) -> (W, horizon, S, D)."""
    W, T_h, S, D = hist.shape
    x = hist.transpose(0, 2, 1, 3).reshape(W * S, T_h * D).astype(np.float64)
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    delta = (x @ coef).reshape(W, S, horizon, D).transpose(0, 2, 1, 3)
    return hist[:, -1:] + delta


def velocity_events(cfg, history: int, horizon: int, frameskip: int) -> tuple[np.ndarray, np.ndarray]:
    """Over the evaluation windows of the slot world: events (W, horizon, S) bool, the slot's object changed velocity
    between the last history frame and that future step; held (W, S) bool, the slot holds an object."""
    needed = (history + horizon - 1) * frameskip + 1
    out, held_out = [], []
    for slots, video, slot_to_object in list(synthetic_videos_from_config(cfg, cfg.data.val_split).values())[
            : cfg.rollout.eval_videos]:
        vel = video.velocities  # (T, N, 2)
        for s in eval_windows(len(slots), needed, 4):
            last = s + frameskip * (history - 1)
            # changed[t, n]: object n's velocity differs from its velocity at the last history frame at t or before
            changed = np.maximum.accumulate(np.any(vel[last:] != vel[last], axis=-1), axis=0)  # (T - last, N)
            steps = frameskip * np.arange(1, horizon + 1)
            ev = np.zeros((horizon, len(slot_to_object)), bool)
            held = slot_to_object >= 0
            ev[:, held] = changed[steps][:, slot_to_object[held]]
            out.append(ev)
            held_out.append(held)
    return np.stack(out), np.stack(held_out)


def event_split(preds: dict, gt: np.ndarray, events: np.ndarray, held: np.ndarray) -> dict:
    # preds: name -> (W, H, S, D); gt (W, H, S, D); events (W, H, S); held (W, S)
    """Per step: fraction of object slots with an event, copy-last's error share on them, ratios by group."""
    sq = {name: ((p - gt) ** 2).mean(axis=-1) for name, p in preds.items()}  # (W, H, S)
    obj = np.broadcast_to(held[:, None, :], events.shape)
    ev, quiet = events & obj, ~events & obj

    def mean(x, sel):
        return (x * sel).sum(axis=(0, 2)) / np.maximum(sel.sum(axis=(0, 2)), 1)

    out = {"event_fraction_per_step": (ev.sum(axis=(0, 2)) / obj.sum(axis=(0, 2))).tolist(),
           "copy_last_error_share_of_events_per_step": ((sq["copy_last"] * ev).sum(axis=(0, 2))
                                                       / (sq["copy_last"] * obj).sum(axis=(0, 2))).tolist()}
    for name in preds:
        if name == "copy_last":
            continue
        for group, sel in (("event", ev), ("no_event", quiet)):
            out[f"{name}_ratio_{group}_per_step"] = (mean(sq[name], sel) / mean(sq["copy_last"], sel)).tolist()
    return out


def per_step_mse(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    return ((pred - gt) ** 2).mean(axis=(0, 2, 3))


def baselines(cfg, ridge: float) -> dict:
    m, fs = cfg.model, cfg.data.frameskip
    horizon = cfg.rollout.eval_chains * m.pred_frames
    splits = load_slot_splits(cfg)
    train = windows(splits[cfg.data.train_split], m.history_frames, horizon, fs, None)
    val = windows(splits[cfg.data.val_split], m.history_frames, horizon, fs, 4, cfg.rollout.eval_videos)
    hist, gt = val[:, : m.history_frames], val[:, m.history_frames :]
    k = np.arange(1, horizon + 1)[None, :, None, None]
    preds = {
        "copy_last": np.broadcast_to(hist[:, -1:], gt.shape),
        "constant_velocity": hist[:, -1:] + k * (hist[:, -1:] - hist[:, -2:-1]),
        "linear_least_squares": predict_linear(fit_linear(train, m.history_frames, ridge), hist, horizon),
    }
    mse = {name: per_step_mse(p, gt) for name, p in preds.items()}
    out = {"windows": len(val), "train_windows": len(train), "copy_last_mse": mse["copy_last"].tolist()}
    for name in ("constant_velocity", "linear_least_squares"):
        out[f"{name}_ratio_per_step"] = (mse[name] / mse["copy_last"]).tolist()
        out[f"{name}_ratio_mean"] = float(mse[name].mean() / mse["copy_last"].mean())
    if cfg.data.source == "synthetic":
        # a perfect predictor still pays the target's observation noise: noise^2 per element
        out["noise_floor_ratio_per_step"] = (cfg.data.synthetic.noise**2 / mse["copy_last"]).tolist()
        out.update(event_split(preds, gt, *velocity_events(cfg, m.history_frames, horizon, fs)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-c", "--config", action="append", default=[], help="predictor config (repeatable)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    p.add_argument("--ridge", type=float, default=1e-4, help="ridge weight, relative to the number of samples")
    p.add_argument("--name", default="predictor_baselines", help="benchmark name stored in the row")
    p.add_argument("--note", default="")
    p.add_argument("--out", default=None,
                   help="JSONL to append to (default benchmarks/results/predictor_<yyyymmdd>.jsonl)")
    a = p.parse_args(argv)
    cfg = load_config(a.config, a.overrides)
    res = baselines(cfg, a.ridge)
    row = {"benchmark": a.name, "note": a.note, "configs": a.config,
           "overrides": [o for o in a.overrides if not o.startswith("data.path=")], "ridge": a.ridge, **res,
           "git": git_info(), "machine": f"{platform.machine()} ({os.cpu_count()} cpus)",
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"predictor_{time.strftime('%Y%m%d')}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    names = ["constant_velocity", "linear_least_squares"] + (["noise_floor"] if "noise_floor_ratio_per_step" in res
                                                             else [])
    body = [[i + 1, res["copy_last_mse"][i], *(res[f"{n}_ratio_per_step"][i] for n in names)]
            for i in range(len(res["copy_last_mse"]))]
    body.append(["mean", float(np.mean(res["copy_last_mse"])),
                 *(res.get(f"{n}_ratio_mean", float("nan")) for n in names)])
    print(table(body, ["rollout step", "copy-last MSE", *(f"{n} / copy-last" for n in names)]))
    if "event_fraction_per_step" in res:
        ev_names = [n for n in names if n != "noise_floor"]
        body = [[i + 1, res["event_fraction_per_step"][i], res["copy_last_error_share_of_events_per_step"][i],
                 *(res[f"{n}_ratio_{g}_per_step"][i] for n in ev_names for g in ("event", "no_event"))]
                for i in range(len(res["copy_last_mse"]))]
        print(table(body, ["rollout step", "slots with a velocity change", "share of copy-last error",
                           *(f"{n} / copy-last ({g})" for n in ev_names for g in ("event", "no event"))]))
    print(f"{res['windows']} held-out windows, linear fit on {res['train_windows']}; row appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
