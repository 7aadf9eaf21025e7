"""Push-T episodes: generation (scripted expert + random exploration), state slots, and writers.

An episode of T frames holds per frame the 7-d state, the 4-d proprio, the action executed *after* that
frame (row T-1 is NaN: nothing follows the last frame), and optionally the rendered RGB frame and instance
masks (agent = 1, block = 2). Expert episodes start at a random state and push the T to a random goal pose;
random episodes follow stable-worldmodel's WeakPolicy for a fixed number of steps. Everything is a
deterministic function of (seed, split, kind, index).

Outputs of ``cjepa pusht``:

* video shards through :class:`cjepa.data.shards.ShardWriter` (mp4 + json + masks), per-step ``state``,
  ``proprio`` and ``action`` in the json (``action`` has T-1 rows: action t moves frame t to t+1);
* a state-slot store (:class:`cjepa.data.slot_store.SlotStoreWriter`) with extras ``proprio``, ``action``
  (NaN-padded to T rows) and ``state``: slots straight from the simulator state, through a fixed random MLP
  (:class:`StateSlotEmbedding`), so a Push-T predictor can be trained and evaluated on a CPU without any
  pixel encoder. It plays the role of an ideal object-centric encoder: one slot per object, carrying only what
  a single frame shows (position; for the block also orientation), plus constant background slots.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np

from cjepa.data.slot_store import SlotSplit, SlotStoreWriter
from cjepa.envs.pusht import PushTEnv, block_inside, sample_state, state_to_proprio
from cjepa.envs.pusht_expert import ExpertConfig, RandomExplorer, ScriptedPushExpert

EXPERT, RANDOM = "expert", "random"
BRANCH_NORMAL, BRANCH_EXPLORE = "branch_normal", "branch_explore"  # data.pusht.branch_policy normal / explore
BRANCH_KINDS = {"normal": BRANCH_NORMAL, "explore": BRANCH_EXPLORE}
_KIND_ID = {EXPERT: 1, RANDOM: 2, BRANCH_NORMAL: 3, BRANCH_EXPLORE: 4}


@dataclass
class PushTEpisode:
    key: str
    kind: str  # "expert" or "random"
    states: np.ndarray  # (T, 7) float64
    actions: np.ndarray  # (T, 2) float32, row T-1 NaN
    goal_pose: Optional[np.ndarray] = None  # (3,) block x, y, angle the expert pushed towards
    reached_goal: bool = False  # the expert's own criterion (see ScriptedPushExpert.done)
    frames: Optional[np.ndarray] = None  # (T, H, W, 3) uint8
    masks: Optional[np.ndarray] = None  # (T, H, W) uint8 instance ids
    meta: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.states)

    @property
    def proprio(self) -> np.ndarray:
        return state_to_proprio(self.states)


def _episode_rng(seed: int, split: str, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(split.encode()), _KIND_ID[kind], index])


def sample_goal_pose(rng: np.random.Generator, wall_margin: float = 45.0) -> np.ndarray:
    """A goal block pose: position U[100, 400]^2, angle U[0, 2 pi), with the whole T at least ``wall_margin``
    px from the walls, so that the pusher can get round it (a T parked against a wall cannot be pushed away
    from it: the disc would have to pass through the wall)."""
    for _ in range(1000):
        pose = np.array([*rng.uniform(100, 400, 2), rng.uniform(0, 2 * np.pi)])
        if block_inside(pose, wall_margin):
            return pose
    raise RuntimeError("could not sample a goal pose away from the walls in 1000 tries")


def generate_episode(
    kind: str,
    index: int,
    *,
    split: str = "train",
    seed: int = 0,
    expert_max_steps: int = 300,
    random_steps: int = 100,
    render_size: Optional[int] = None,
    masks: bool = False,
    env: Optional[PushTEnv] = None,
    expert_max_step: float = 100.0,
) -> PushTEpisode:
    """One episode; ``render_size`` None skips rendering (state-only data is ~10x faster)."""
    if kind not in _KIND_ID:
        raise ValueError(f"unknown episode kind {kind!r}; choose {EXPERT!r} or {RANDOM!r}")
    rng = _episode_rng(seed, split, kind, index)
    env = env or PushTEnv(render_size or 64)
    obs = env.reset(sample_state(rng))
    goal_pose = sample_goal_pose(rng) if kind == EXPERT else None
    policy = (ScriptedPushExpert(ExpertConfig(max_step=expert_max_step), rng=rng) if kind == EXPERT
              else RandomExplorer(rng))
    done = (lambda state: policy.done(state, goal_pose)) if kind == EXPERT else None
    states, actions, frames, mask_list, reached = _play(
        env, obs, lambda state: policy.act(state, goal_pose), expert_max_steps if kind == EXPERT else random_steps,
        render_size, masks, done)
    if kind == EXPERT and not reached:
        reached = policy.done(states[-1], goal_pose)
    return PushTEpisode(
        key=f"{kind}_{index:06d}",
        kind=kind,
        states=states,
        actions=actions,
        goal_pose=goal_pose,
        reached_goal=reached,
        frames=frames,
        masks=mask_list,
        meta={"split": split, "seed": seed, "index": index},
    )


def _play(env: PushTEnv, obs: dict, act, max_steps: int, render_size: Optional[int], masks: bool, done=None):
    """Step ``env`` from ``obs`` with ``act(state)`` for up to ``max_steps`` steps, stopping before a step where
    ``done(state)`` holds. Returns states (T, ...) float64, actions (T, 2) float32 (the last row NaN: no action
    after the last frame), frames and masks ((T, ...) or None when ``render_size`` is None / ``masks`` off) and
    whether ``done`` stopped it."""
    states, actions, frames, mask_list = [obs["state"]], [], [], []

    def capture():
        if render_size:
            frames.append(env.render(render_size))
            if masks:
                mask_list.append(env.render_masks(render_size))

    capture()
    stopped = False
    for _ in range(max_steps):
        if done is not None and done(states[-1]):
            stopped = True
            break
        action = act(states[-1])
        obs, _, _ = env.step(action)
        actions.append(action)
        states.append(obs["state"])
        capture()
    actions.append(np.full(2, np.nan))
    return (np.asarray(states, np.float64), np.asarray(actions, np.float32),
            np.stack(frames) if frames else None, np.stack(mask_list) if mask_list else None, stopped)


def generate_branch_episode(
    policy: str,
    index: int,
    *,
    expert_count: int,
    steps: int = 50,
    action_mean=None,
    action_std=None,
    split: str = "train",
    seed: int = 0,
    expert_max_steps: int = 300,
    expert_max_step: float = 100.0,
    render_size: Optional[int] = None,
    masks: bool = False,
    env: Optional[PushTEnv] = None,
) -> PushTEpisode:
    """A branch episode (``data.pusht.branch_*``): the world put into a uniformly drawn frame of expert episode
    ``index mod expert_count`` of ``split`` (regenerated: episodes are deterministic), then ``steps`` actions of
    ``policy``: "normal" draws each action i.i.d. from N(``action_mean``, ``action_std``) per dimension (raw
    actions, not clipped, as a planner's candidates reach the simulator), "explore" is :class:`RandomExplorer`.
    ``meta`` names the source episode and frame."""
    if policy not in BRANCH_KINDS:
        raise ValueError(f"unknown branch policy {policy!r}; choose one of {sorted(BRANCH_KINDS)}")
    if expert_count < 1 or steps < 1:
        raise ValueError("generate_branch_episode needs expert_count >= 1 and steps >= 1")
    kind = BRANCH_KINDS[policy]
    if policy == "normal":
        if action_mean is None or action_std is None:
            raise ValueError("branch policy 'normal' needs action_mean and action_std")
        mean, std = np.asarray(action_mean, np.float64), np.asarray(action_std, np.float64)
        if mean.shape != (2,) or std.shape != (2,) or not (np.isfinite(mean).all() and (std > 0).all()):
            raise ValueError(f"action_mean / action_std must be 2 finite numbers (std > 0), got {mean}, {std}")
    env = env or PushTEnv(render_size or 64)
    source = index % expert_count
    expert = generate_episode(EXPERT, source, split=split, seed=seed, expert_max_steps=expert_max_steps,
                              expert_max_step=expert_max_step, env=env)
    rng = _episode_rng(seed, split, kind, index)
    start = int(rng.integers(expert.num_frames))
    obs = env.reset(expert.states[start])
    explorer = RandomExplorer(rng) if policy == "explore" else None

    def act(state):
        # float32 first: the stored actions replay the stored states exactly
        return np.float32(explorer.act(state) if explorer is not None else rng.normal(mean, std))

    states, actions, frames, mask_list, _ = _play(env, obs, act, steps, render_size, masks)
    return PushTEpisode(
        key=f"{kind}_{index:06d}",
        kind=kind,
        states=states,
        actions=actions,
        frames=frames,
        masks=mask_list,
        meta={"split": split, "seed": seed, "index": index, "source": expert.key, "source_frame": start},
    )


def store_action_stats(root, split: str, kinds=(EXPERT, RANDOM)) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension nan-aware mean and std (2,) of the raw actions of the ``kinds`` episodes of a state-slot
    store split: the statistics :func:`cjepa.data.windows.fit_aux_normalizer` gives the normalised action space
    when the split holds those kinds only."""
    data = SlotSplit(root, split)
    keys = [k for k in data if any(k.startswith(f"{kind}_") and k[len(kind) + 1:].isdigit() for kind in kinds)]
    if not keys:
        raise ValueError(f"{root}/{split}: no episodes of kinds {list(kinds)} to take action statistics from")
    a = np.concatenate([np.asarray(data.extra(k, "action"), np.float64).reshape(-1, 2) for k in keys])
    return np.nanmean(a, axis=0), np.nanstd(a, axis=0)


def generate_episodes(kind: str, count: int, *, start: int = 0, **kw) -> Iterator[PushTEpisode]:
    """Episodes ``start .. start + count - 1`` of one kind (one shared simulator)."""
    env = PushTEnv(kw.get("render_size") or 64)
    for i in range(start, start + count):
        yield generate_episode(kind, i, env=env, **kw)


# --------------------------------------------------------------------------------------------- state slots

_EMBED_SEED = 20240611  # the state -> slot map is part of the data format: identical for every split and seed
NUM_BASE_TYPES = 2  # agent, block
# Block keypoints in body coordinates: both ends of the bar and the end of the stem. Three points fix the pose,
# and a rotation moves them by as many pixels as it moves the T's outline.
BLOCK_KEYPOINTS = np.array([[-60.0, 15.0], [60.0, 15.0], [0.0, 120.0]])
FOURIER_CYCLES = np.array([1.0, 2.0, 4.0])  # cycles per 512-px arena of the position features


def _fourier(points: np.ndarray, cycles: np.ndarray = FOURIER_CYCLES) -> np.ndarray:
    """(..., 2) world points -> (..., 4 F) sin/cos position features at F frequencies (cycles per arena)."""
    phase = 2 * np.pi * points[..., None] / 512.0 * np.asarray(cycles, np.float64)  # (..., 2, F)
    return np.concatenate([np.sin(phase), np.cos(phase)], axis=-1).reshape(*points.shape[:-1], 4 * len(cycles))


def block_keypoints(states: np.ndarray) -> np.ndarray:
    """(T, 7) states -> (T, 3, 2) world positions of the block keypoints."""
    c, s = np.cos(states[:, 4]), np.sin(states[:, 4])
    kx, ky = BLOCK_KEYPOINTS[:, 0], BLOCK_KEYPOINTS[:, 1]
    x = states[:, 2:3] + c[:, None] * kx - s[:, None] * ky
    y = states[:, 3:4] + s[:, None] * kx + c[:, None] * ky
    return np.stack([x, y], axis=-1)


class StateSlotEmbedding:
    """Fixed random map object state -> slot: tanh MLP over [type one-hot, position features].

    Slot order is [agent, block, background_0, ...]. A slot carries what one frame shows of its object: the
    agent's centre, the block's three keypoints (so position and orientation both move the code in proportion
    to how far the T's pixels move), each through sin/cos features at 1, 2 and 4 cycles per arena -- a
    spatially graded code, like patch features, under which a 20 px move changes a slot about as much as it
    changes the proprio embedding (with plain scaled coordinates the slot term of the planning cost was ~60x
    weaker than the proprio term, and planners ignored the block). Background slots are constant. The
    predictor has no slot-index embedding and the planning cost matches slots, so the fixed order is no
    shortcut.
    """

    def __init__(self, slot_dim: int, background_slots: int = 2, hidden: int = 256, cycles=FOURIER_CYCLES):
        if slot_dim < 1 or background_slots < 0:
            raise ValueError("slot_dim must be >= 1 and background_slots >= 0")
        self.slot_dim, self.background_slots = slot_dim, background_slots
        self.cycles = np.asarray(cycles, np.float64)
        self.num_slots = NUM_BASE_TYPES + background_slots
        self.num_features = self.num_slots + len(BLOCK_KEYPOINTS) * 4 * len(self.cycles)
        g = np.random.default_rng(_EMBED_SEED + 7919 * slot_dim + background_slots)
        self.w1 = g.normal(0, 1.0 / np.sqrt(self.num_features), (self.num_features, hidden))
        self.b1 = g.normal(0, 0.3, hidden)
        self.w2 = g.normal(0, 1.0 / np.sqrt(hidden), (hidden, slot_dim))

    def features(self, states: np.ndarray) -> np.ndarray:
        s = np.asarray(states, np.float64)
        if s.ndim != 2 or s.shape[1] != 7:
            raise ValueError(f"states must be (T, 7); got {s.shape}")
        T, S, K = len(s), self.num_slots, len(BLOCK_KEYPOINTS)
        f = np.zeros((T, S, self.num_features))
        f[:, np.arange(S), np.arange(S)] = 1.0  # type one-hot
        f[:, 0,
          S:] = np.tile(_fourier(s[:, 0:2], self.cycles),
                        (1, K))  # the agent is a point: its centre in every keypoint slot
        f[:, 1, S:] = _fourier(block_keypoints(s), self.cycles).reshape(T, -1)
        return f

    def __call__(self, states: np.ndarray, noise: float = 0.0, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """(T, 7) states -> (T, S, D) float32 slots."""
        h = np.tanh(self.features(states) @ self.w1 + self.b1)
        slots = h @ self.w2
        if noise > 0:
            slots = slots + (rng or np.random.default_rng(0)).normal(0, noise, slots.shape)
        return slots.astype(np.float32)


def episode_state_slots(ep: PushTEpisode, embedding: StateSlotEmbedding, noise: float = 0.0,
                        seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(ep.key.encode())])
    return embedding(ep.states, noise, rng)


def write_state_slot_store(episodes, root, split: str, embedding: StateSlotEmbedding, *, noise: float = 0.0,
                           seed: int = 0,
                           producer: Optional[dict] = None) -> int:
    """Add episodes to a slot store split (resumable: keys already present are skipped). Returns frames written."""
    producer = producer or {"encoder": "pusht-state-slots", "slot_dim": embedding.slot_dim,
                            "background_slots": embedding.background_slots, "noise": noise}
    frames = 0
    with SlotStoreWriter(root, split, num_slots=embedding.num_slots, slot_dim=embedding.slot_dim,
                         producer=producer) as writer:
        for ep in episodes:
            if ep.key in writer:
                continue
            slots = episode_state_slots(ep, embedding, noise, seed)
            writer.add(ep.key, slots, proprio=ep.proprio, action=ep.actions, state=ep.states)
            frames += ep.num_frames
    return frames


# --------------------------------------------------------------------------------------------- video shards


def episode_json_meta(ep: PushTEpisode) -> dict:
    """The per-video json of a Push-T shard sample (``action`` has T-1 rows: action t moves frame t to t+1).

    The shard writer fills the reserved fields (key, source, split, fps, num_frames, size, codec) itself.
    """
    meta = {
        "kind": ep.kind,
        "state": ep.states.tolist(),
        "proprio": ep.proprio.tolist(),
        "action": ep.actions[:-1].astype(np.float64).tolist(),
        "objects": [{"id": 1, "name": "agent"}, {"id": 2, "name": "block"}],
        "seed": ep.meta.get("seed"),
        "index": ep.meta.get("index"),
    }
    if ep.goal_pose is not None:
        meta["goal_pose"] = ep.goal_pose.tolist()
        meta["reached_goal"] = bool(ep.reached_goal)
    return meta


def arrays_from_json_meta(meta: dict) -> dict[str, np.ndarray]:
    """Inverse of :func:`episode_json_meta` for the numeric fields: state (T, 7), proprio (T, 4), action (T, 2)
    NaN-padded, as the slot store keeps them."""
    try:
        state = np.asarray(meta["state"], np.float64)
        proprio = np.asarray(meta["proprio"], np.float64)
        action = np.asarray(meta["action"], np.float64).reshape(-1, 2)
    except KeyError as err:
        raise ValueError(f"Push-T sample json lacks {err}") from err
    if len(action) != len(state) - 1:
        raise ValueError(f"Push-T sample json: {len(action)} actions for {len(state)} frames (expected T-1)")
    return {"state": state, "proprio": proprio, "action": np.concatenate([action, np.full((1, 2), np.nan)])}


def shard_writer_class():
    """cjepa.data.shards.ShardWriter, with a clear message where that module is not installed."""
    try:
        from cjepa.data.shards import ShardWriter  # in a try: its absence gets a message naming what needs it
    except ImportError as err:
        raise ImportError(
            "writing Push-T video shards needs cjepa.data.shards.ShardWriter, which is not available in this "
            f"installation ({err}); generate the state-slot store only with data.pusht.videos=false"
        ) from err
    return ShardWriter


def write_video_shards(writer, episodes) -> int:
    """Write rendered episodes through an open ShardWriter; returns the number written."""
    n = 0
    for ep in episodes:
        if ep.frames is None:
            raise ValueError(f"episode {ep.key} was generated without frames (render_size=None)")
        writer.write(ep.key, ep.frames, episode_json_meta(ep), masks=ep.masks)
        n += 1
    return n
