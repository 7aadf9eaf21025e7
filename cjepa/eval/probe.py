"""Attention probing: does a masked object's query attend to the object it collides with?

For every collision (object a, object b, frame f) of held-out videos, object a is masked in a history window that
puts f at history index ``c`` (its t=0 anchor stays visible, as in training), the predictor runs once, and the
attention rows of a's masked query tokens at history steps c-k..c+k are read from every layer. Each row is summed
over time per object (an object's tokens: all T_h + T_p steps of its slot), averaged over the query tokens, and

    ratio = attention to the partner b  /  mean attention to the other objects   (1.0 = no preference)

Every object owns the same number of tokens, so uniform attention gives exactly 1.0. Tokens of a itself and of
empty slots count in neither term. Each collision is probed twice (a masked with partner b, and b masked with
partner a). Over events the ratio is a ratio of sums (sum of partner attention / sum of mean-other attention),
which weighs every event by its attention mass rather than letting near-zero denominators dominate; the 95%
interval resamples whole videos.

Layers: the maps are head-averaged (what ``nn.MultiheadAttention(average_attn_weights=True)`` returns, and what
the original probing scripts read), reported per layer and for the layer-averaged map; the headline ``ratio``
is the last layer's, the original scripts' default (``layer_idx=-1``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from cjepa.data.slot_store import open_split
from cjepa.data.synthetic import synthetic_videos_from_config
from cjepa.errors import UserError
from cjepa.eval.vqa.data import video_key_candidates
from cjepa.eval.vqa.questions import instance_id, read_shard_json, shard_files
from cjepa.eval.vqa.rollouts import object_ids_reader
from cjepa.models.layers import AttentionCapture


class ProbeError(UserError):
    """The probe cannot run on this checkpoint or data (the message names what is wrong)."""


@dataclass(frozen=True)
class ProbeEvent:
    video: str
    frame: int  # raw frame of the collision
    start: int  # raw frame of history step 0
    query_object: int
    partner_object: int
    query_slot: int
    partner_slot: int
    other_slots: tuple[int, ...]


@dataclass(frozen=True)
class ProbeVideo:
    """What the probe needs from one video: slots (T, S, D), the object each slot holds per frame (T, S), -1 = none,
    and collisions as (frame, object a, object b) in the same object ids."""

    slots: np.ndarray
    slot_object: np.ndarray
    collisions: Sequence[tuple[int, int, int]]


# --------------------------------------------------------------------------------------------- the number


def partner_and_others(rows: torch.Tensor, partner: int, others: Sequence[int]) -> tuple[float, float]:
    """rows (Q, T, S): Q query tokens' attention over the token grid. Returns (attention to the partner slot,
    mean attention to the other slots), each summed over time and averaged over the query tokens."""
    if not others:
        raise ValueError("the ratio needs at least one other object besides the query and its partner")
    per_slot = rows.sum(dim=1).mean(dim=0)  # (S,)
    return float(per_slot[partner]), float(per_slot[list(others)].mean())


def partner_ratio(rows: torch.Tensor, partner: int, others: Sequence[int]) -> float:
    """Attention to the partner / mean attention to the others (1.0 = no preference) for one event."""
    p, o = partner_and_others(rows, partner, others)
    return p / o


# --------------------------------------------------------------------------------------------- events


def collision_events(
    videos: Mapping[str, ProbeVideo], *, history_frames: int, frameskip: int, collision_index: int
) -> tuple[list[ProbeEvent], int]:
    """Probe events (both orders of every collision) whose history window fits the video; also the number of
    collisions skipped: window off the video, a colliding object not held by one slot throughout the window
    (video slots can lose or swap objects), or no third object in a slot at the collision frame."""
    events, skipped = [], 0
    for key, v in videos.items():
        for frame, a, b in v.collisions:
            start = frame - collision_index * frameskip
            stop = start + (history_frames - 1) * frameskip + 1
            if start < 0 or stop > len(v.slots):
                skipped += 1
                continue
            ids = v.slot_object[start:stop:frameskip]  # (T_h, S)
            slot_of = {int(o): s for s, o in enumerate(ids[collision_index]) if o >= 0}
            others = [s for o, s in sorted(slot_of.items()) if o not in (a, b)]
            if not others or a not in slot_of or b not in slot_of or not _held(ids, slot_of[a],
                                                                               a) or not _held(ids, slot_of[b], b):
                skipped += 1
                continue
            for q, p in ((a, b), (b, a)):
                events.append(ProbeEvent(key, int(frame), int(start), int(q), int(p), slot_of[q], slot_of[p],
                                         tuple(others)))
    return events, skipped


def _held(ids: np.ndarray, slot: int, obj: int) -> bool:
    return bool((ids[:, slot] == obj).all())


# --------------------------------------------------------------------------------------------- the probe


def query_steps(history_frames: int, collision_index: int, k: int) -> list[int]:
    """History steps c-k..c+k that hold masked query tokens (step 0 is the visible anchor)."""
    return [t for t in range(collision_index - k, collision_index + k + 1) if 1 <= t < history_frames]


@torch.no_grad()
def event_attention(model, videos: Mapping[str, ProbeVideo], events: Sequence[ProbeEvent], *, frameskip: int, device,
                    batch_size: int = 64):
    """Per event, the attention rows of the masked query slot's tokens: a list over events of (layers, T, T, S)
    tensors (query step, then key step and slot), computed in batches."""
    T_h, S = model.history_frames, model.num_slots
    T = T_h + model.pred_frames
    out = []
    for i in range(0, len(events), batch_size):
        chunk = events[i : i + batch_size]
        hist = np.stack([videos[e.video].slots[e.start : e.start + T_h * frameskip : frameskip] for e in chunk])
        masked = torch.zeros(len(chunk), S, dtype=torch.bool)
        masked[torch.arange(len(chunk)), torch.tensor([e.query_slot for e in chunk])] = True
        capture = AttentionCapture()
        model(torch.from_numpy(hist).float().to(device), masked.to(device), capture=capture)
        maps = torch.stack([capture.maps[j] for j in sorted(capture.maps)], dim=1)  # (B, layers, L, L)
        maps = maps.float().cpu().view(len(chunk), -1, T, S, T, S)
        out.extend(m[:, :, e.query_slot] for m, e in zip(maps, chunk))
    return out


def summarise(maps: Sequence[torch.Tensor], events: Sequence[ProbeEvent], steps: Sequence[int], collision_index: int,
              seed: int = 0) -> dict:
    """The probe's numbers from per-event query rows (layers, T, T, S): per layer and layer-mean ratios, the
    per-event values of the last layer, a bootstrap interval, and attention-vs-time curves around the collision."""
    if not events:
        raise ProbeError("no collision fits a history window in these videos: nothing to probe")
    n_layers = maps[0].shape[0]
    pairs = np.zeros((len(events), n_layers + 1, 2))  # (E, layers + mean, [partner, others])
    T = maps[0].shape[2]
    curves = np.zeros((n_layers + 1, 2, T))  # (layers + mean, [partner, others], T)
    for i, (m, e) in enumerate(zip(maps, events)):
        rows = m[:, list(steps)]  # (layers, Q, T, S)
        rows = torch.cat([rows, rows.mean(dim=0, keepdim=True)])  # + the layer-averaged map
        for layer, r in enumerate(rows):
            pairs[i, layer] = partner_and_others(r, e.partner_slot, e.other_slots)
            per_t = r.mean(dim=0)  # (T, S)
            curves[layer, 0] += per_t[:, e.partner_slot].numpy()
            curves[layer, 1] += per_t[:, list(e.other_slots)].mean(dim=1).numpy()
    ratios = pairs[:, :, 0].sum(0) / pairs[:, :, 1].sum(0)  # (layers + 1,)
    last = pairs[:, n_layers - 1]
    curves /= len(events)
    return {
        "ratio": float(ratios[n_layers - 1]),
        "ratio_ci95": bootstrap_interval(last, [e.video for e in events], seed),
        "ratio_layer_mean": float(ratios[n_layers]),
        "ratio_per_layer": [float(r) for r in ratios[:n_layers]],
        "layer": f"last ({n_layers - 1} of 0..{n_layers - 1}); head-averaged",
        "events": len(events),
        "event_ratio_median": float(np.median(last[:, 0] / last[:, 1])),
        "query_steps": list(steps),
        "collision_index": collision_index,
        "curve": {
            "dt": [t - collision_index for t in range(T)],
            "partner_last": curves[n_layers - 1, 0].tolist(), "others_last": curves[n_layers - 1, 1].tolist(),
            "partner_layer_mean": curves[n_layers, 0].tolist(), "others_layer_mean": curves[n_layers, 1].tolist(),
        },
        "per_event": [asdict(e) | {"partner": float(p), "others": float(o)} for e, (p, o) in zip(events, last)],
    }


def bootstrap_interval(pairs: np.ndarray, videos: Sequence[str], seed: int, draws: int = 1000) -> list[float]:
    """95% interval of sum partner / sum others (pairs (E, 2)) resampling whole videos: a video's events (both
    orders of a collision, collisions of the same objects) are not independent of each other."""
    keys = sorted(set(videos))
    per_video = np.zeros((len(keys), 2))
    np.add.at(per_video, [keys.index(v) for v in videos], pairs)
    idx = np.random.default_rng(seed).integers(0, len(keys), (draws, len(keys)))
    boot = per_video[idx, 0].sum(1) / per_video[idx, 1].sum(1)
    return [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]


# --------------------------------------------------------------------------------------------- data


def slot_world_videos(cfg, split: str) -> dict[str, ProbeVideo]:
    """The built-in slot world's videos of ``split`` as the run's config generates them, with their collisions:
    slots are embedded object states, so the object each slot holds is known exactly."""
    if split not in (cfg.data.train_split, cfg.data.val_split):
        raise ProbeError(f"--split {split!r}: the slot world of this run has splits {cfg.data.train_split!r} and "
                         f"{cfg.data.val_split!r}")
    return {
        key: ProbeVideo(slots, np.tile(slot_object, (len(slots), 1)),
                        [(int(f), int(a), int(b)) for f, a, b in video.collisions])
        for key, (slots, video, slot_object) in synthetic_videos_from_config(cfg, split).items()
    }


def store_videos(source: str, path: str, split: str, annotations: str) -> dict[str, ProbeVideo]:
    """Videos of a slot store (or pickle) with per-slot ``object_ids`` (from extraction's Hungarian binding against
    the instance masks, or the billiards VQA world's exact ids), and collisions from CLEVRER-schema annotations
    (``collision``: ``object_ids`` + ``frame_id``; ``object_property`` maps object ids to instance ids)."""
    if not annotations:
        raise ProbeError("probing a slot store needs the collision annotations: vqa.annotations=FILE|DIR")
    slots = open_split(source, path, split)
    ids_of = object_ids_reader(slots, f"{path} ({split})")
    out = {}
    for ann in _annotations(Path(annotations), split):
        scene = int(ann.get("scene_index", -1))
        key = next((k for k in video_key_candidates(scene, str(ann.get("video_filename", ""))) if k in slots), None)
        if key is None or not ann.get("collision"):
            continue
        inst = {int(o["object_id"]): instance_id(o) for o in ann.get("object_property", [])}
        coll = [(int(c["frame_id"]), inst.get(int(c["object_ids"][0]), -2),
                 inst.get(int(c["object_ids"][1]), -2)) for c in ann["collision"]]
        out[key] = ProbeVideo(np.asarray(slots[key]), np.asarray(ids_of(key)), coll)
    if not out:
        raise ProbeError(f"vqa.annotations={annotations}: no annotation with collisions names a video of {path} "
                         f"({split})")
    return out


def _annotations(p: Path, split: str) -> list[dict]:
    """CLEVRER-schema annotations from a JSON list, a directory of annotation files, or a video-shard split
    (a shard root holding ``<split>/manifest.json`` reads that split)."""
    if (p / split / "manifest.json").is_file():
        p = p / split
    if not p.exists():
        raise ProbeError(f"vqa.annotations={p}: not found")
    if shard_files(p) is not None:
        return [meta for _, meta in read_shard_json(p, "json")]
    if p.is_dir():
        return [json.loads(f.read_text()) for f in sorted(p.rglob("*.json"))]
    data = json.loads(p.read_text())
    if not isinstance(data, list):
        raise ProbeError(f"vqa.annotations={p}: expected a list of CLEVRER-style annotations with 'collision'")
    return data


# --------------------------------------------------------------------------------------------- outputs


def plot_curve(result: dict, path: Path):
    """Attention of the masked query to its collision partner vs the mean other object, per grid step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = result["curve"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(c["dt"], c["partner_last"], marker="o", color="C3", label="partner (last layer)")
    ax.plot(c["dt"], c["others_last"], marker="o", color="C0", label="other objects, mean (last layer)")
    ax.plot(c["dt"], c["partner_layer_mean"], ls="--", color="C3", alpha=0.6, label="partner (layer mean)")
    ax.plot(c["dt"], c["others_layer_mean"], ls="--", color="C0", alpha=0.6, label="others (layer mean)")
    ax.axvline(0, color="k", lw=0.8)
    ax.axvspan(result["history_frames"] - result["collision_index"] - 0.5, c["dt"][-1] + 0.5, color="0.9", zorder=0)
    ax.set_xlabel("token time step relative to the collision (grey: predicted steps)")
    ax.set_ylabel("attention per token")
    ax.set_title(f"masked query -> partner / others = {result['ratio']:.2f} ({result['events']} events)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def plot_example(maps: torch.Tensor, event: ProbeEvent, steps: Sequence[int], collision_index: int, path: Path):
    """One event's layer-averaged attention of the query token at the collision step over the (T, S) grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = collision_index if collision_index in steps else steps[0]
    grid = maps.mean(dim=0)[t].numpy()  # (T, S)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    im = ax.imshow(grid.T, aspect="auto", cmap="magma")
    fig.colorbar(im, ax=ax, label="attention")
    labels = []
    for s in range(grid.shape[1]):
        labels.append(
            "query"
            if s == event.query_slot
            else "partner"
            if s == event.partner_slot
            else "other"
            if s in event.other_slots
            else "empty"
        )
        labels[-1] += f" ({s})"
    ax.set_yticks(range(grid.shape[1]), labels, fontsize=7)
    ax.axvline(collision_index, color="w", lw=0.8, ls="--")
    ax.set_xlabel("token time step (dashed: collision)")
    ax.set_title(f"{event.video}, collision at frame {event.frame}: query slot {event.query_slot}, step {t}",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def write_outputs(result: dict, maps: Sequence[torch.Tensor], events: Sequence[ProbeEvent], out: Path,
                  step: int) -> None:
    """probe.json, probe_curve.png, probe_example.png and tensorboard (scalars and both figures) under ``out``."""
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(result, indent=1))
    curve = plot_curve(result, out / "probe_curve.png")
    example = plot_example(maps[0], events[0], result["query_steps"], result["collision_index"],
                           out / "probe_example.png")
    tb = SummaryWriter(log_dir=str(out / "tb"))
    try:
        tb.add_scalar("probe/ratio", result["ratio"], step)
        tb.add_scalar("probe/ratio_layer_mean", result["ratio_layer_mean"], step)
        for i, r in enumerate(result["ratio_per_layer"]):
            tb.add_scalar(f"probe/ratio_layer{i}", r, step)
        tb.add_figure("probe/attention_vs_time", curve, step)
        tb.add_figure("probe/example_map", example, step)
    finally:
        tb.close()
        plt.close("all")


def run_probe(model, videos: Mapping[str, ProbeVideo], *, frameskip: int, k: int, device, out: Optional[Path] = None,
              step: int = 0,
              collision_index: Optional[int] = None, max_events: int = 0) -> dict:
    """The whole probe on loaded videos: events, attention, numbers, and (with ``out``) the files."""
    T_h = model.history_frames
    c = T_h // 2 if collision_index is None else collision_index
    if not 1 <= c < T_h:
        raise ProbeError(f"the collision must fall on a masked history step 1..{T_h - 1}; got step {c} "
                         f"(model.history_frames={T_h})")
    if k < 0:
        raise ProbeError(f"--window must be >= 0 (query steps c-k..c+k), got {k}")
    events, skipped = collision_events(videos, history_frames=T_h, frameskip=frameskip, collision_index=c)
    if max_events:
        events = events[:max_events]
    steps = query_steps(T_h, c, k)
    maps = event_attention(model, videos, events, frameskip=frameskip, device=device)
    result = summarise(maps, events, steps, c) | {"collisions_skipped": skipped, "videos": len(videos), "window_k": k,
                                                   "history_frames": T_h, "frameskip": frameskip}
    if out is not None:
        write_outputs(result, maps, events, out, step)
    return result
