"""A built-in slot world with real dynamics, for the demo and for tests.

Discs of different sizes and masses bounce inside the unit square and collide elastically with each other
and the walls (event-free integration with sub-steps and pairwise impulse resolution). Each object's state
(position, velocity, size, colour) goes through one fixed random MLP into a D-dim "slot"; unused slots hold a
fixed "empty" code. Slot order is shuffled per video (as with randomly initialised slot attention, a slot
index means nothing across videos) and stays fixed within a video (as tracking does). Masking has something
causal to learn here: where a hidden object is, and what a collision does to it, follows from the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_COLOURS = 8
_EMBED_SEED = 1234  # the state->slot map is part of the world, identical for every split and data seed
_FEATURES = 5 + NUM_COLOURS


@dataclass
class BilliardsVideo:
    positions: np.ndarray  # (T, N, 2)
    velocities: np.ndarray  # (T, N, 2)
    radii: np.ndarray  # (N,)
    colours: np.ndarray  # (N,) int
    collisions: list[tuple[int, int, int]]  # (frame, i, j)


def sample_initial_state(num_objects: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(positions (N, 2), velocities (N, 2), radii (N,), colours (N,)) of a fresh scene."""
    radii = rng.uniform(0.05, 0.09, num_objects)
    pos = np.zeros((num_objects, 2))
    for i in range(num_objects):  # rejection-sample non-overlapping starts
        for _ in range(1000):
            p = rng.uniform(radii[i], 1 - radii[i], 2)
            if all(np.linalg.norm(p - pos[j]) > radii[i] + radii[j] + 0.01 for j in range(i)):
                break
        pos[i] = p
    angle = rng.uniform(0, 2 * np.pi, num_objects)
    speed = rng.uniform(0.012, 0.03, num_objects)  # unit-square lengths per frame
    vel = np.stack([np.cos(angle), np.sin(angle)], 1) * speed[:, None]
    colours = rng.choice(NUM_COLOURS, num_objects, replace=num_objects > NUM_COLOURS)
    return pos, vel, radii, colours


def integrate_billiards(pos: np.ndarray, vel: np.ndarray, radii: np.ndarray, colours: np.ndarray, num_frames: int,
                        substeps: int = 8) -> BilliardsVideo:
    """Deterministic dynamics from an initial state (so a scene can be re-run with an object removed)."""
    pos, vel = np.array(pos, dtype=np.float64), np.array(vel, dtype=np.float64)
    num_objects = len(radii)
    mass = radii**2
    P, V, hits = np.zeros((num_frames, num_objects, 2)), np.zeros((num_frames, num_objects, 2)), []
    dt = 1.0 / substeps
    for t in range(num_frames):
        P[t], V[t] = pos, vel
        for _ in range(substeps):
            pos = pos + vel * dt
            for axis in range(2):  # walls: reflect and push back inside
                lo, hi = pos[:, axis] < radii, pos[:, axis] > 1 - radii
                vel[lo | hi, axis] *= -1
                pos[lo, axis] = radii[lo]
                pos[hi, axis] = 1 - radii[hi]
            for i in range(num_objects):
                for j in range(i + 1, num_objects):
                    d = pos[j] - pos[i]
                    dist = np.linalg.norm(d)
                    if dist >= radii[i] + radii[j] or dist == 0:
                        continue
                    n = d / dist
                    rel = np.dot(vel[i] - vel[j], n)
                    if rel > 0:  # approaching: exchange momentum along the normal (elastic)
                        J = 2 * rel / (1 / mass[i] + 1 / mass[j])
                        vel[i] -= J / mass[i] * n
                        vel[j] += J / mass[j] * n
                        if not hits or hits[-1] != (t, i, j):
                            hits.append((t, i, j))
                    overlap = radii[i] + radii[j] - dist
                    pos[i] -= n * overlap * mass[j] / (mass[i] + mass[j])
                    pos[j] += n * overlap * mass[i] / (mass[i] + mass[j])
    return BilliardsVideo(P, V, np.asarray(radii), np.asarray(colours), hits)


def simulate_billiards(num_objects: int, num_frames: int, rng: np.random.Generator,
                       substeps: int = 8) -> BilliardsVideo:
    return integrate_billiards(*sample_initial_state(num_objects, rng), num_frames, substeps)


class SlotEmbedding:
    """Fixed random map object state -> slot vector: tanh MLP, scaled to roughly unit variance."""

    def __init__(self, slot_dim: int, hidden: int = 96):
        g = np.random.default_rng(_EMBED_SEED + slot_dim)
        self.w1 = g.normal(0, 1.0 / np.sqrt(_FEATURES), (_FEATURES, hidden))
        self.b1 = g.normal(0, 0.3, hidden)
        self.w2 = g.normal(0, 1.0 / np.sqrt(hidden), (hidden, slot_dim))
        self.empty = g.normal(0, 1.0, slot_dim)

    def features(self, video: BilliardsVideo) -> np.ndarray:
        T, N, _ = video.positions.shape
        f = np.zeros((T, N, _FEATURES))
        f[..., 0:2] = (video.positions - 0.5) * 4.0
        f[..., 2:4] = video.velocities * 80.0
        f[..., 4] = (video.radii[None, :] - 0.07) * 50.0
        for n, c in enumerate(video.colours):
            f[:, n, 5 + c] = 1.5
        return f

    def __call__(self, video: BilliardsVideo) -> np.ndarray:
        h = np.tanh(self.features(video) @ self.w1 + self.b1)
        return h @ self.w2  # (T, N, D)


def synthetic_video_slots(num_objects: int, num_slots: int, num_frames: int, slot_dim: int, noise: float,
                          rng: np.random.Generator, embedding: SlotEmbedding):
    """One video: (slots (T, S, D) float32, the simulated video, slot->object map (-1 = empty))."""
    video = simulate_billiards(num_objects, num_frames, rng)
    obj = embedding(video)  # (T, N, D)
    slots = np.tile(embedding.empty, (num_frames, num_slots, 1))
    order = rng.permutation(num_slots)  # slot order[k] holds object k (for k < N)
    slots[:, order[:num_objects]] = obj
    slots = slots + rng.normal(0, noise, slots.shape)
    slot_to_object = np.full(num_slots, -1)
    slot_to_object[order[:num_objects]] = np.arange(num_objects)
    return slots.astype(np.float32), video, slot_to_object


def synthetic_split_videos(num_videos: int, *, num_slots: int, slot_dim: int, num_frames: int, min_objects: int,
                           max_objects: int, noise: float, seed: int,
                           split: str) -> dict[str, tuple[np.ndarray, BilliardsVideo, np.ndarray]]:
    """{video key: (slots (T, S, D), simulated video with its collisions, slot->object map)}; deterministic in (seed,
    split)."""
    emb = SlotEmbedding(slot_dim)
    split_id = sum(ord(c) for c in split)
    out = {}
    for i in range(num_videos):
        rng = np.random.default_rng([seed, split_id, i])
        n = int(rng.integers(min_objects, max_objects + 1))
        out[f"{split}_{i:05d}"] = synthetic_video_slots(n, num_slots, num_frames, slot_dim, noise, rng, emb)
    return out


def make_synthetic_split(num_videos: int, **kw) -> dict[str, np.ndarray]:
    """{video key: (T, S, D)} for one split; deterministic in (seed, split)."""
    return {key: v[0] for key, v in synthetic_split_videos(num_videos, **kw).items()}


def _world_kwargs(cfg) -> dict:
    s = cfg.data.synthetic
    return dict(num_slots=cfg.model.num_slots, slot_dim=cfg.model.slot_dim, num_frames=s.num_frames,
                min_objects=s.min_objects, max_objects=s.max_objects, noise=s.noise, seed=s.seed)


def synthetic_videos_from_config(cfg, split: str) -> dict[str, tuple[np.ndarray, BilliardsVideo, np.ndarray]]:
    """One split of the slot world that ``cfg`` trains on, with each video's collisions and slot->object map."""
    s = cfg.data.synthetic
    num = s.num_train if split == cfg.data.train_split else s.num_val
    return synthetic_split_videos(num, split=split, **_world_kwargs(cfg))


def synthetic_splits_from_config(cfg) -> dict[str, dict[str, np.ndarray]]:
    """Train and val splits of the built-in slot world, sized by ``cfg.data.synthetic``."""
    s = cfg.data.synthetic
    common = _world_kwargs(cfg)
    return {
        cfg.data.train_split: make_synthetic_split(s.num_train, split=cfg.data.train_split, **common),
        cfg.data.val_split: make_synthetic_split(s.num_val, split=cfg.data.val_split, **common),
    }
