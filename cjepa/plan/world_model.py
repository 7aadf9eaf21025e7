"""What a planner needs from a world model, and the slot world model that provides it.

:class:`PlanningWorldModel` is the structural contract between CEM-MPC and any latent world model: encode the
observation into per-frame nodes, encode the goal, roll a batch of candidate action sequences out in latent
space, and score the rollouts. :class:`SlotWorldModel` implements it for the C-JEPA Push-T predictor
(object slots + proprio node + action node per frame) on top of any :class:`SlotEncoder`: the state-slot
encoder here (CPU evaluation without pixels) or a pixel encoder (SAVi, VideoSAUR:
:mod:`cjepa.plan.pixel_encoder`), which plugs in with the same two methods.

Latent rollout (spec section 2.6). Nodes of the T_obs observed frames are [slots, proprio, action]; the
action node of an observed frame holds the action chunk executed after it, and for the last observed frame
the first planned block. Then, while blocks remain: predict from the last ``rollout_window`` frames (right-
aligned time embedding), re-match the predicted object slots to the previous frame (optional), put the
next planned block into the predicted frame's action node, append. One last prediction with no further
action gives the frame after all H blocks, so the rollout has T_obs + H frames.

Cost (section 2.7): matched mean squared slot error between the final predicted frame and the goal slots
plus ``proprio_weight`` x the mean squared error of the predicted proprio node against the embedded goal
proprio. Proprio and actions are standardised with the training statistics stored in the checkpoint (Q8),
not with statistics of the evaluation data as in the original; a plain state_dict file (the original Push-T
checkpoints) has none, and gets them fitted on the training split of the store it plans on.

History (Q12): the original plans from ``history_size = 1`` observed frame with a predictor trained on 3.
``history_obs`` chooses how many observed frames (stride = action block) enter; ``rollout_window`` how many
frames the predictor sees per call (default: its training history).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol, runtime_checkable

import numpy as np
import torch

from cjepa.backends.attention import check_backend
from cjepa.config import ConfigError, ModelConfig
from cjepa.data.pusht import StateSlotEmbedding
from cjepa.data.slot_store import SlotStoreError, open_split, read_meta
from cjepa.data.windows import AuxNormalizer, SlotWindows, fit_aux_normalizer, per_split_window_normalizer
from cjepa.envs.pusht import PushTEnv, state_to_proprio
from cjepa.models.predictor_checkpoints import predictor_from_checkpoint
from cjepa.plan.diagnose import best_step_cost, block_placed, placed_first, state_cost, success_first_cost
from cjepa.plan.matching import (
    DEFAULT_MAX_PERM_SLOTS,
    hungarian_reference,
    matched_mse,
    reorder_reference,
    reorder_to_match,
)
from cjepa.plan.pixel_encoder import load_pixel_encoder
from cjepa.utils.checkpoint import load_train_state, resolve_checkpoint
from cjepa.utils.precision import autocast, resolve_precision


@dataclass
class Observation:
    """What the planner has seen, oldest first, at stride ``action_block`` env steps.

    proprio (T_obs, 4) raw; state (T_obs, 7) for state encoders; pixels (T_obs, H, W, 3) uint8 for pixel
    encoders; masks (T_obs, H, W) uint8 instance ids of those frames (0 background, 1 agent, 2 block) for
    conditional pixel encoders, which seed their slots from the first frame's objects; actions (T_obs - 1,
    block * 2) raw env actions executed between consecutive observed frames.
    """

    proprio: np.ndarray
    state: Optional[np.ndarray] = None
    pixels: Optional[np.ndarray] = None
    actions: Optional[np.ndarray] = None
    masks: Optional[np.ndarray] = None

    @property
    def num_frames(self) -> int:
        return len(self.proprio)


@dataclass
class Goal:
    proprio: np.ndarray  # (4,)
    state: Optional[np.ndarray] = None  # (7,)
    pixels: Optional[np.ndarray] = None  # (H, W, 3) uint8
    masks: Optional[np.ndarray] = None  # (H, W) uint8 instance ids, for conditional pixel encoders


@runtime_checkable
class PlanningWorldModel(Protocol):
    """Structural interface used by :class:`cjepa.plan.mpc.MPCPlanner` (no inheritance needed)."""

    action_block: int  # env steps per planned block
    action_dim: int  # size of one planned block in the model's (normalised) action space

    def encode(self, obs: Observation) -> torch.Tensor:
        """(T_obs, N, D) nodes of the observed frames; the last frame's action node is a placeholder."""
        ...

    def encode_goal(self, goal: Goal) -> torch.Tensor:
        """Goal representation consumed by :meth:`cost`."""
        ...

    def rollout(self, nodes: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """nodes (T_obs, N, D), candidate blocks (C, H, A) -> latent trajectories (C, T_obs + H, N, D)."""
        ...

    def cost(self, trajectories: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """(C, T, N, D) rollouts, encoded goal -> (C,) costs (lower is better)."""
        ...

    def blocks_to_env(self, blocks: torch.Tensor) -> np.ndarray:
        """(H, A) planned blocks in model space -> (H * action_block, 2) raw env actions."""
        ...


@runtime_checkable
class SlotEncoder(Protocol):
    """Observation -> object slots. Implemented by :class:`StateSlotEncoder` and by
    :class:`cjepa.plan.pixel_encoder.PixelSlotEncoder`."""

    num_slots: int
    slot_dim: int
    pixel_size: Optional[int]  # side of the rendered frames it reads; None = it reads simulator states
    needs_masks: bool  # it also reads the frames' instance masks (Observation.masks, Goal.masks)

    def encode_slots(self, obs: Observation) -> torch.Tensor:
        """(T_obs, S, D) slots of the observed frames."""
        ...

    def encode_goal_slots(self, goal: Goal) -> torch.Tensor:
        """(S, D) slots of the goal frame."""
        ...


class StateSlotEncoder:
    """Slots straight from simulator states through the fixed embedding that made the training store."""

    def __init__(self, embedding, device="cpu"):
        self.embedding = embedding
        self.num_slots, self.slot_dim = embedding.num_slots, embedding.slot_dim
        self.pixel_size: Optional[int] = None
        self.needs_masks = False
        self.device = torch.device(device)

    def encode_slots(self, obs: Observation) -> torch.Tensor:
        if obs.state is None:
            raise ValueError("the state-slot encoder needs Observation.state")
        return torch.from_numpy(self.embedding(np.asarray(obs.state).reshape(-1, 7))).to(self.device)

    def encode_goal_slots(self, goal: Goal) -> torch.Tensor:
        if goal.state is None:
            raise ValueError("the state-slot encoder needs Goal.state")
        return torch.from_numpy(self.embedding(np.asarray(goal.state).reshape(1, 7))[0]).to(self.device)


class SlotWorldModel:
    """A trained :class:`cjepa.models.predictor.PushTPredictor` + a slot encoder + the training normaliser."""

    def __init__(self, predictor, encoder: SlotEncoder, normalizer: AuxNormalizer, *, action_block: int,
                 rollout_window: int = 0, reorder_slots: bool = True, proprio_weight: float = 1.0,
                 max_perm_slots: int = DEFAULT_MAX_PERM_SLOTS, matching: str = "batched", cost_frames: str = "final",
                 agent_weight: float = 1.0, precision: str = "fp32", device="cpu"):
        self.predictor = predictor.to(device).eval()
        self.encoder = encoder
        self.normalizer = normalizer
        self.device = torch.device(device)
        self.num_slots = predictor.num_object_slots
        if encoder.num_slots != self.num_slots:
            raise ValueError(f"encoder gives {encoder.num_slots} slots, the predictor was trained on {self.num_slots}")
        self.action_block = action_block
        self.action_dim = int(np.asarray(normalizer.action_mean).shape[0])
        self.env_action_dim = self.action_dim // action_block
        if self.env_action_dim * action_block != self.action_dim:
            raise ValueError(f"normaliser action size {self.action_dim} is not a multiple of "
                             f"action_block={action_block}")
        T_h = predictor.history_frames
        self.rollout_window = min(rollout_window or T_h, T_h)
        self.reorder_slots, self.proprio_weight, self.max_perm_slots = reorder_slots, proprio_weight, max_perm_slots
        # "batched": all candidates' assignments in one tensor op (ours); "scipy": one linear_sum_assignment per
        # candidate and step in a host loop, as the original does (Q13) -- the benchmark's reference.
        if matching not in ("batched", "scipy"):
            raise ValueError(f"matching must be 'batched' or 'scipy', got {matching!r}")
        self.matching = matching
        # "final": the cost of the last predicted frame (the original); "best": of the cheapest predicted block
        # boundary (success counts after any step, so a plan may pass through the goal before its end).
        if cost_frames not in ("final", "best"):
            raise ValueError(f"cost_frames must be 'final' or 'best', got {cost_frames!r}")
        if agent_weight < 0:
            raise ValueError(f"agent_weight must be >= 0, got {agent_weight}")
        self.cost_frames, self.agent_weight = cost_frames, agent_weight
        self._observed: Optional[int] = None  # frames of the last encoded observation ("best" scores the rest)
        self.precision = resolve_precision(precision, self.device, "plan.precision")  # of the rollouts' predictor calls

    # ------------------------------------------------------------------ helpers

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.nan_to_num(np.asarray(x, np.float32))).to(self.device)

    def normalise_actions(self, blocks_raw: np.ndarray) -> np.ndarray:
        return self.normalizer.action(np.asarray(blocks_raw, np.float32))

    def blocks_to_env(self, blocks: torch.Tensor) -> np.ndarray:
        """(..., H, A) planned blocks -> (..., H * action_block, env action size) raw env actions."""
        raw = self.normalizer.action_inverse(blocks.detach().float().cpu().numpy())  # (..., H, A)
        return raw.reshape(*raw.shape[:-2], -1, self.env_action_dim)

    # ------------------------------------------------------------------ protocol

    @torch.no_grad()
    def encode(self, obs: Observation) -> torch.Tensor:
        T = obs.num_frames
        slots = self.encoder.encode_slots(obs).float()  # (T, S, D)
        prop = self._tensor(self.normalizer.proprio(np.asarray(obs.proprio, np.float32).reshape(T, -1)))
        acts = np.zeros((T, self.action_dim), np.float32)  # last row: placeholder for the first planned block
        if T > 1:
            if obs.actions is None or len(obs.actions) != T - 1:
                raise ValueError(f"{T} observed frames need {T - 1} executed action blocks, got "
                                 f"{None if obs.actions is None else len(obs.actions)}")
            acts[:-1] = self.normalise_actions(np.asarray(obs.actions).reshape(T - 1, -1))
        nodes = self.predictor.nodes(slots[None], prop[None], self._tensor(acts)[None])  # (1, T, S+2, D)
        self._observed = T
        return nodes[0]

    @torch.no_grad()
    def encode_goal(self, goal: Goal) -> torch.Tensor:
        slots = self.encoder.encode_goal_slots(goal).float()  # (S, D)
        prop = self._tensor(self.normalizer.proprio(np.asarray(goal.proprio, np.float32).reshape(1, -1)))
        prop_node = self.predictor.proprio_encoder(prop)  # (1, D)
        return torch.cat([slots, prop_node], dim=0)  # (S + 1, D)

    @torch.no_grad()
    def rollout(self, nodes: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        C, H, _ = actions.shape
        S = self.num_slots
        act_nodes = self.predictor.action_encoder(actions.to(self.device))  # (C, H, D)
        z = nodes.unsqueeze(0).expand(C, *nodes.shape).clone()  # (C, T_obs, S+2, D)
        z[:, -1, S + 1] = act_nodes[:, 0]
        used = 1
        while used <= H:  # predict the frames after blocks used-1 .. ; the last pass has no new block
            with autocast(self.precision, self.device):
                pred = self.predictor.inference(z[:, -self.rollout_window:])  # (C, T_p, S+2, D)
            pred = pred.float()  # the trajectory, matching and cost stay fp32
            take = min(pred.shape[1], H - used) if used < H else 1
            pred = pred[:, :take]
            if self.reorder_slots:
                ref = z[:, -1:].expand(-1, take, -1, -1)
                pred = (reorder_to_match(pred, ref, S, self.max_perm_slots) if self.matching == "batched"
                        else reorder_reference(pred, ref, S))
            if used < H:
                pred = pred.clone()
                pred[:, :, S + 1] = act_nodes[:, used : used + take]
            z = torch.cat([z, pred], dim=1)
            used += take if used < H else 1
        return z  # (C, T_obs + H, S+2, D)

    @torch.no_grad()
    def cost(self, trajectories: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """(C, T_obs + H, S+2, D) rollouts of the last encoded observation -> (C,) matched slot MSE + proprio_weight x
        proprio MSE against the goal, of the final frame ("final") or of the cheapest predicted frame ("best")."""
        S = self.num_slots
        if self.cost_frames == "final":
            frames = trajectories[:, -1:]  # (C, 1, S+2, D)
        else:
            if self._observed is None:
                raise RuntimeError("cost_frames='best' scores the predicted frames: encode the observation first")
            frames = trajectories[:, self._observed :]  # (C, H, S+2, D)
        C, F = frames.shape[:2]
        goal_slots = goal[:S].expand(C, F, -1, -1)
        if self.agent_weight != 1.0:
            # The state-slot encoder's order is [agent, block, background...]: the goal's slot 0 is the agent.
            weights = torch.ones(S, device=frames.device)
            weights[0] = self.agent_weight
            slot_cost = matched_mse(frames[:, :, :S], goal_slots, self.max_perm_slots, weights)
        elif self.matching == "batched":
            slot_cost = matched_mse(frames[:, :, :S], goal_slots, self.max_perm_slots)
        else:
            slot_cost = hungarian_reference(frames[:, :, :S], goal_slots)[0] / (S * frames.shape[-1])
        prop_cost = (frames[:, :, S] - goal[S]).pow(2).mean(-1)  # (C, F)
        return (slot_cost + self.proprio_weight * prop_cost).min(dim=1).values


# --------------------------------------------------------------------------------------------- loading


@dataclass
class LoadedPredictor:
    """A Push-T predictor ready for planning, with its normaliser and where both came from (one line)."""

    model: torch.nn.Module
    normalizer: AuxNormalizer
    model_cfg: ModelConfig
    note: str


def load_predictor_checkpoint(path: str, device="cpu", attention_backend: str = "torch", *, config=None,
                              dataset: str = "") -> LoadedPredictor:
    """The Push-T predictor of ``path`` and its proprio/action normaliser.

    ``path`` is one of our checkpoints (directory or run directory): model config and normaliser are read from
    it. Or a plain state_dict file, ours or the original Push-T world model's (``model.``-prefixed keys with the
    frozen encoder, see :mod:`cjepa.models.predictor_checkpoints`): the model is built from ``config.model``
    (the original's needs ``model.layout=reference``) and, as such a file carries no statistics, the normaliser
    is fitted on the ``config.data.train_split`` split of the Push-T store ``dataset`` by ``config.data.aux_norm``,
    the rule a training run on that store applies.
    """
    if not path:
        raise ConfigError("plan.checkpoint is required: a checkpoint directory, a run directory or a state_dict file")
    ckpt = resolve_checkpoint(path)
    if ckpt.is_dir():
        loaded = _load_checkpoint_dir(ckpt, device, attention_backend)
    else:
        loaded = _load_state_dict_file(ckpt, device, attention_backend, config, dataset)
    _check_finite(loaded)
    return loaded


def _check_finite(loaded: LoadedPredictor) -> None:
    """Non-finite statistics would turn every planned action into NaN: refuse them, naming the entries."""
    bad = [f"{k}{np.flatnonzero(~np.isfinite(v.numpy())).tolist()}" for k, v in loaded.normalizer.state_dict().items()
           if not bool(torch.isfinite(v).all())]
    if bad:
        raise ConfigError(f"{loaded.note}: the proprio/action statistics are not finite at {', '.join(bad)}; "
                          "planning would execute NaN actions")


def _require_pusht(model_cfg, where: str) -> None:
    if model_cfg.kind != "pusht":
        raise ConfigError(f"{where}: model.kind={model_cfg.kind!r}; planning needs a Push-T predictor "
                          "(model.kind=pusht)")


def _load_checkpoint_dir(ckpt: Path, device, attention_backend: str) -> LoadedPredictor:

    if not (ckpt / "config.yaml").is_file():
        raise ConfigError(f"{ckpt}: a checkpoint directory for planning needs model.pt + config.yaml + train_state.pt")
    loaded = predictor_from_checkpoint(ckpt, ModelConfig(), attention_backend, device, check=_require_pusht)
    task_state = load_train_state(ckpt).get("task", {})
    if "normalizer" not in task_state:
        raise ConfigError(f"{ckpt}: no proprio/action normaliser in train_state.pt (was it trained with "
                          "model.kind=pusht?)")
    return LoadedPredictor(loaded.model, AuxNormalizer.from_state_dict(task_state["normalizer"]), loaded.model_cfg,
                           f"checkpoint {ckpt} (normaliser from its train_state.pt)")


def _load_state_dict_file(f: Path, device, attention_backend: str, config, dataset: str) -> LoadedPredictor:
    if config is None:
        raise ConfigError(f"{f} is a plain state_dict: the model is built from the config's model section, pass one")
    loaded = predictor_from_checkpoint(f, config.model, attention_backend, device, check=_require_pusht)
    if not dataset:
        raise ConfigError(f"{f} carries no proprio/action statistics: plan.dataset (--dataset) must name the Push-T "
                          "store to fit them on")
    normalizer = normalizer_from_store(dataset, config.data.train_split, loaded.model_cfg, config.data.frameskip,
                                       config.data.aux_norm)
    note = (f"state_dict {f} ({loaded.pusht_report.summary()}); normaliser fitted on "
            f"{dataset}/{config.data.train_split} "
            f"(data.aux_norm={config.data.aux_norm})")
    return LoadedPredictor(loaded.model, normalizer, loaded.model_cfg, note)


def normalizer_from_store(root: str, split: str, model_cfg, frameskip: int, rule: str = "train") -> AuxNormalizer:
    """Proprio/action statistics of one split of a Push-T store, as training on it computes them.

    ``rule`` is ``data.aux_norm``: "train" = per-frame statistics of the split (ours), "per_split" = the
    original's statistics over all its (overlapping) training windows.
    """
    videos = open_split("store", root, split)
    missing = [name for name in ("proprio", "action") if name not in videos.extras]
    if missing:
        raise SlotStoreError(f"{root}/{split}: no {' or '.join(missing)} extra to fit the normaliser on "
                             "(a Push-T store made by `cjepa pusht` has both)")
    proprio = {k: videos.extra(k, "proprio") for k in videos}
    action = {k: videos.extra(k, "action") for k in videos}
    if rule == "train":
        return fit_aux_normalizer(list(proprio.values()), list(action.values()), model_cfg.action_chunk)
    windows = SlotWindows(videos, model_cfg.history_frames, model_cfg.pred_frames, frameskip, proprio=proprio,
                          action=action)
    return per_split_window_normalizer(windows)


def state_slot_embedding_for_store(root: str | Path):
    """The :class:`StateSlotEmbedding` recorded in a Push-T state-slot store's meta.json."""
    meta = read_meta(root)
    prod = meta.get("producer", {})
    if prod.get("encoder") != "pusht-state-slots":
        raise ValueError(f"{root}: not a Push-T state-slot store (producer {prod})")
    return StateSlotEmbedding(int(prod["slot_dim"]), int(prod["background_slots"]))


def build_world_model(checkpoint: str, plan_cfg, *, dataset: str, device="cpu", attention_backend: str = "torch",
                      config=None, report=None) -> SlotWorldModel:
    """The planner's world model for ``checkpoint``, observing through the encoder ``plan_cfg.encoder``.

    ``config`` (the full config) is needed for plain state_dict files (see :func:`load_predictor_checkpoint`);
    ``report`` receives one line saying what was loaded from where.
    """
    check_backend(attention_backend, device)
    loaded = load_predictor_checkpoint(checkpoint, device, attention_backend, config=config, dataset=dataset)
    predictor, normalizer, model_cfg = loaded.model, loaded.normalizer, loaded.model_cfg
    if report is not None:
        report(loaded.note)
    encoder: SlotEncoder
    if plan_cfg.encoder == "pixels":
        encoder = load_pixel_encoder(plan_cfg.encoder_checkpoint, dataset, device=device,
                                     attention_backend=attention_backend)
        source = f"encoder {plan_cfg.encoder_checkpoint}"
    elif plan_cfg.encoder == "state":
        encoder = StateSlotEncoder(state_slot_embedding_for_store(dataset), device)
        source = f"store {dataset}"
    else:  # pragma: no cover - guarded by the config Literal
        raise ValueError(f"unknown plan.encoder {plan_cfg.encoder!r}")
    if (encoder.num_slots, encoder.slot_dim) != (model_cfg.num_slots, model_cfg.slot_dim):
        raise ConfigError(f"{source} gives {encoder.num_slots} slots of {encoder.slot_dim}-d, checkpoint "
                          f"{checkpoint} "
                          f"expects model.num_slots={model_cfg.num_slots}, model.slot_dim={model_cfg.slot_dim}")
    if model_cfg.action_chunk != plan_cfg.action_block:
        raise ConfigError(f"plan.action_block={plan_cfg.action_block} differs from the predictor's "
                         f"model.action_chunk={model_cfg.action_chunk}")
    return SlotWorldModel(predictor, encoder, normalizer, action_block=plan_cfg.action_block,
                          rollout_window=plan_cfg.rollout_window, reorder_slots=plan_cfg.reorder_slots,
                          proprio_weight=plan_cfg.proprio_weight, max_perm_slots=plan_cfg.max_perm_slots,
                          matching=plan_cfg.matching, cost_frames=plan_cfg.cost_frames,
                          agent_weight=plan_cfg.agent_weight, precision=plan_cfg.precision, device=device)


class EnsembleWorldModel:
    """Several learned world models planned as one: every candidate is rolled out by each member, and its cost is
    the mean of the members' costs.

    CEM converges on the candidates that look best in the model, so what a single model gets wrong in their favour
    is what it finds (planner REPORT: the plans a model chooses are about twice as good in it as in the simulator).
    Errors the members do not share average out of the mean cost, as in the ensembles of model-based RL (PETS).
    Nodes of all members travel side by side, concatenated along the node axis in member order; each member keeps
    its own embedders of proprio and actions. The members must share the action normaliser (CEM samples in one
    normalised action space) and the slot encoder's geometry. What a single model reports of a plan (its decoded
    prediction, its encoder) is the first member's.
    """

    def __init__(self, members: list[SlotWorldModel]):
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two world models, got {len(members)}")
        first = members[0]
        for i, m in enumerate(members[1:], 1):
            same_space = (m.action_block == first.action_block and m.action_dim == first.action_dim
                          and np.allclose(m.normalizer.action_mean, first.normalizer.action_mean)
                          and np.allclose(m.normalizer.action_std, first.normalizer.action_std))
            if not same_space:
                raise ValueError(f"ensemble member {i} plans in another action space than member 0 (action block, "
                                 "size or normaliser differ): train the members on one store")
            if (m.num_slots, m.encoder.slot_dim) != (first.num_slots, first.encoder.slot_dim):
                raise ValueError(f"ensemble member {i} has {m.num_slots} slots of {m.encoder.slot_dim}-d, member 0 "
                                 f"{first.num_slots} of {first.encoder.slot_dim}-d")
        self.members = members
        self.action_block, self.action_dim = first.action_block, first.action_dim
        self.encoder, self.num_slots = first.encoder, first.num_slots
        self._nodes = first.num_slots + 2  # nodes per member and frame: slots, proprio, action
        self._goal_nodes = first.num_slots + 1  # slots and proprio

    def _split(self, x: torch.Tensor, dim: int, size: int) -> tuple[torch.Tensor, ...]:
        parts = torch.split(x, size, dim=dim)
        if len(parts) != len(self.members) or parts[-1].shape[dim] != size:
            raise ValueError(f"expected {len(self.members)} members x {size} nodes along dim {dim}, got shape "
                             f"{tuple(x.shape)}")
        return parts

    def encode(self, obs: Observation) -> torch.Tensor:
        return torch.cat([m.encode(obs) for m in self.members], dim=1)  # (T_obs, M * (S+2), D)

    def encode_goal(self, goal: Goal) -> torch.Tensor:
        return torch.cat([m.encode_goal(goal) for m in self.members], dim=0)  # (M * (S+1), D)

    def rollout(self, nodes: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        parts = self._split(nodes, 1, self._nodes)
        return torch.cat([m.rollout(n, actions) for m, n in zip(self.members, parts)], dim=2)  # (C, T, M*(S+2), D)

    def cost(self, trajectories: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        trajs, goals = self._split(trajectories, 2, self._nodes), self._split(goal, 0, self._goal_nodes)
        return torch.stack([m.cost(t, g) for m, t, g in zip(self.members, trajs, goals)]).mean(0)  # (C,)

    def blocks_to_env(self, blocks: torch.Tensor) -> np.ndarray:
        return self.members[0].blocks_to_env(blocks)


class SimulatorWorldModel:
    """Ground-truth dynamics in a slot world model's node space: the planning upper bound.

    Rollouts replay each candidate in a Push-T simulator from the last observed state. With ``cost_space``
    "embedding" (the protocol's oracle) the states at block boundaries are embedded exactly as observations
    are (state slots + the model's proprio and action embedders), so :meth:`cost` is the learned model's cost
    with the model error removed: what CEM and that cost can achieve. With "state" the nodes are the raw
    simulator states (one 7-d node per frame) and the cost is :func:`cjepa.plan.diagnose.state_cost`, the
    success rule's own geometry: what CEM can achieve at all, which tells whether the embedding is the limit.
    "state_path" keeps every env step of the replay (one 7-d node per step, not per block) and scores a candidate
    by its best step: the protocol checks success after every env step, so a plan that passes through the goal
    region before its last step solves the episode although a final-frame cost would rank it as a miss.
    Stateful: ``rollout`` starts from the state seen by the last ``encode`` call. Needs the state-slot encoder
    (it embeds simulator states).
    """

    COST_SPACES = ("embedding", "state", "state_path")

    def __init__(self, slot_model: SlotWorldModel, cost_space: str = "embedding", angle_weight: float = 1.0,
                 final_weight: float = 0.0, mean_weight: float = 0.0, agent_weight: float = 1.0,
                 success_first: bool = False, agent_weight_placed: Optional[float] = None,
                 placed_first_rank: bool = False):
        if not isinstance(slot_model.encoder, StateSlotEncoder):
            raise ValueError("SimulatorWorldModel embeds simulator states: it needs a StateSlotEncoder")
        if cost_space not in self.COST_SPACES:
            raise ValueError(f"cost_space must be one of {self.COST_SPACES}, got {cost_space!r}")
        self.model, self.cost_space, self.angle_weight = slot_model, cost_space, angle_weight
        if final_weight < 0 or mean_weight < 0:
            raise ValueError(f"final_weight and mean_weight must be >= 0, got {final_weight} and {mean_weight}")
        # "state_path" only (cjepa.plan.diagnose.best_step_cost): + final_weight x the last step's cost. The whole
        # plan is executed, so a plan whose best step misses the goal hands the next plan whatever its later steps do.
        self.final_weight = final_weight
        # "state_path" only: + mean_weight x the mean cost over the plan's steps (breaks the ties of the best-step
        # minimum, which is flat wherever the best step is the first one); agent_weight scales the agent's share
        # of the position error (state costs).
        self.mean_weight, self.agent_weight = mean_weight, agent_weight
        if agent_weight_placed is not None and agent_weight_placed < 0:
            raise ValueError(f"agent_weight_placed must be >= 0 or None, got {agent_weight_placed}")
        # State costs: the agent's weight at steps whose block is placed (cjepa.plan.diagnose.block_placed), so a
        # plan that has placed the block is ranked by bringing the agent home; None = agent_weight everywhere.
        self.agent_weight_placed = agent_weight_placed
        # "state_path" only: every step whose block is placed outranks every step whose block is not
        # (cjepa.plan.diagnose.placed_first), so a heavier placed weight never makes placing the block a loss.
        self.placed_first = placed_first_rank
        # "state_path" only: every step that meets the success rule outranks every step that does not
        # (cjepa.plan.diagnose.success_first_cost), whatever the agent weight makes of them.
        self.success_first = success_first
        self.action_block, self.action_dim = slot_model.action_block, slot_model.action_dim
        self.env = PushTEnv(64)
        self._state: Optional[np.ndarray] = None
        self._observed = 0  # nodes of the last encoded observation: the state-path cost skips them
        self.env_steps = 0  # simulated steps so far (throughput measurements)

    @classmethod
    def from_config(cls, slot_model: SlotWorldModel, plan_cfg) -> "SimulatorWorldModel":
        """The oracle of ``plan_cfg`` (plan.oracle_cost, oracle_agent_weight, oracle_agent_weight_placed,
        oracle_final_weight, oracle_success_first, oracle_placed_first)."""
        return cls(slot_model, cost_space=plan_cfg.oracle_cost, agent_weight=plan_cfg.oracle_agent_weight,
                   final_weight=plan_cfg.oracle_final_weight, success_first=plan_cfg.oracle_success_first,
                   agent_weight_placed=plan_cfg.oracle_agent_weight_placed,
                   placed_first_rank=plan_cfg.oracle_placed_first)

    def encode(self, obs: Observation) -> torch.Tensor:
        if obs.state is None:
            raise ValueError("the simulator world model needs Observation.state")
        self._state = np.asarray(obs.state, np.float64)[-1]
        if self.cost_space != "embedding":
            nodes = torch.from_numpy(np.asarray(obs.state, np.float64).reshape(-1, 1, 7))
        else:
            nodes = self.model.encode(obs)
        self._observed = len(nodes)
        return nodes

    def encode_goal(self, goal: Goal) -> torch.Tensor:
        if self.cost_space != "embedding":
            if goal.state is None:
                raise ValueError("the state-space cost needs Goal.state")
            return torch.from_numpy(np.asarray(goal.state, np.float64).reshape(7))
        return self.model.encode_goal(goal)

    def blocks_to_env(self, blocks: torch.Tensor) -> np.ndarray:
        return self.model.blocks_to_env(blocks)

    def simulate(self, actions: torch.Tensor, every: Optional[int] = None) -> np.ndarray:
        """(C, H, A) candidate blocks -> (C, H * action_block / every + 1, 7) simulator states after every
        ``every``-th env step (default: at block boundaries), start first."""
        if self._state is None:
            raise RuntimeError("SimulatorWorldModel.encode must be called before rollout")
        every = self.action_block if every is None else every
        C, H, _ = actions.shape
        raw = self.model.blocks_to_env(actions)  # (C, H * action_block, 2)
        states = np.empty((C, H * self.action_block // every + 1, 7))
        states[:, 0] = self._state
        for c in range(C):
            states[c, 1:] = self.env.simulate(self._state, raw[c], every=every)
        self.env_steps += C * H * self.action_block
        return states

    @torch.no_grad()
    def rollout(self, nodes: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        C, H, _ = actions.shape
        states = self.simulate(actions, every=1 if self.cost_space == "state_path" else None)
        if self.cost_space != "embedding":
            sim = torch.from_numpy(states).view(C, len(states[0]), 1, 7)  # (C, steps + 1, 1, 7)
            return torch.cat([nodes[:-1].unsqueeze(0).expand(C, -1, -1, -1), sim], dim=1)
        wm = self.model
        slots = torch.from_numpy(wm.encoder.embedding(states.reshape(-1,
                                                                     7))).to(wm.device).view(C, H + 1, wm.num_slots, -1)
        prop = wm._tensor(wm.normalizer.proprio(state_to_proprio(states).astype(np.float32)))
        acts = torch.cat([actions.to(wm.device), actions.new_zeros(C, 1, actions.shape[-1]).to(wm.device)], dim=1)
        sim = wm.predictor.nodes(slots, prop, acts)  # (C, H + 1, S + 2, D)
        return torch.cat([nodes[:-1].unsqueeze(0).expand(C, -1, -1, -1), sim], dim=1)

    def cost(self, trajectories: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        if self.cost_space == "embedding":
            return self.model.cost(trajectories, goal)
        goal_state = goal.cpu().numpy()  # (7,)
        if self.cost_space == "state":
            final = trajectories[:, -1, 0].cpu().numpy()  # (C, 7)
            return torch.from_numpy(state_cost(final, goal_state, self.angle_weight,
                                               self.agent_weight, self.agent_weight_placed)).float()
        # The observed frames (the start included) are not the plan's to score: the episode would have ended at
        # a successful one, and their cost is the same for every candidate.
        path = trajectories[:, self._observed :, 0].cpu().numpy()  # (C, steps, 7)
        step_cost = success_first_cost if self.success_first else state_cost
        costs = step_cost(path, goal_state, self.angle_weight, self.agent_weight,
                          self.agent_weight_placed)  # (C, steps)
        if self.placed_first:
            costs = placed_first(costs, block_placed(path, goal_state))
        return torch.from_numpy(best_step_cost(costs, self.final_weight, self.mean_weight)).float()
