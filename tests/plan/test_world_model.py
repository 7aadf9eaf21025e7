"""The planning world model: protocol conformance, normalisation, latent rollout and cost (spec 2.6, 2.7)."""

import numpy as np
import pytest
import torch

from cjepa.data.windows import AuxNormalizer
from cjepa.envs.pusht import state_to_proprio
from cjepa.plan.world_model import (
    EnsembleWorldModel,
    Goal,
    Observation,
    PlanningWorldModel,
    SlotEncoder,
    SlotWorldModel,
    StateSlotEncoder,
)
from tests.helpers import REPO
from tests.plan.conftest import make_world_model

STATE = np.array([200.0, 300.0, 250.0, 220.0, 0.7, 12.0, -4.0])


def obs_of(states, actions=None):
    states = np.atleast_2d(states)
    return Observation(proprio=state_to_proprio(states), state=states, actions=actions)


def test_protocol_conformance(world_model):
    """The slot world model and the state encoder satisfy the planner's protocols structurally."""
    assert isinstance(world_model, PlanningWorldModel)
    assert isinstance(world_model.encoder, SlotEncoder)
    assert isinstance(StateSlotEncoder(world_model.encoder.embedding), SlotEncoder)
    assert not isinstance(object(), PlanningWorldModel)
    assert world_model.action_dim == 10 and world_model.action_block == 5


def test_action_normalisation_round_trip(world_model):
    """Raw env actions -> normalised blocks (training statistics) -> back to env actions, exactly."""
    raw = np.random.default_rng(0).uniform(-1, 1, (15, 2)).astype(np.float32)
    blocks = world_model.normalise_actions(raw.reshape(3, 10))
    np.testing.assert_allclose(blocks.reshape(3, 5, 2).mean((0, 1)), ((raw - [0.01, -0.02]) / [0.5, 0.4]).mean(0),
                               rtol=1e-5)
    back = world_model.blocks_to_env(torch.from_numpy(blocks))
    np.testing.assert_allclose(back, raw, atol=1e-6)
    n = world_model.normalizer
    np.testing.assert_allclose(n.action_inverse(n.action(raw.reshape(3, 10))), raw.reshape(3, 10), atol=1e-6)


def test_encode_nodes(world_model):
    """Nodes are [slots, proprio, action]: slots from the encoder, proprio/executed actions through the
    model's embedders after standardising; the last action node is a zero-action placeholder."""
    states = np.stack([STATE, STATE + [5, 0, 0, 0, 0, 0, 0]])
    acts = np.random.default_rng(1).uniform(-1, 1, (1, 10))
    nodes = world_model.encode(obs_of(states, acts))
    assert nodes.shape == (2, 6, 16)
    wm = world_model
    torch.testing.assert_close(nodes[:, :4], wm.encoder.encode_slots(obs_of(states)))
    prop = torch.from_numpy(wm.normalizer.proprio(state_to_proprio(states).astype(np.float32)))
    torch.testing.assert_close(nodes[:, 4], wm.predictor.proprio_encoder(prop))
    a0 = torch.from_numpy(wm.normalise_actions(acts.astype(np.float32)))
    torch.testing.assert_close(nodes[0, 5], wm.predictor.action_encoder(a0)[0])
    torch.testing.assert_close(nodes[1, 5], wm.predictor.action_encoder(torch.zeros(1, 10))[0])
    with pytest.raises(ValueError, match="executed action blocks"):
        world_model.encode(obs_of(states))


@torch.no_grad()
def test_rollout_follows_the_latent_protocol():
    """Rollout = observed frame with block 0 in its action node, then per prediction the next block put into
    the predicted frame's action node, then one final prediction: T_obs + H frames, computed step by step."""
    wm = make_world_model(reorder=False)
    nodes = wm.encode(obs_of(STATE))
    cand = torch.randn(7, 4, 10, generator=torch.Generator().manual_seed(0))
    traj = wm.rollout(nodes, cand)
    assert traj.shape == (7, 5, 6, 16)
    act = wm.predictor.action_encoder(cand)  # (C, H, D)
    z = nodes.unsqueeze(0).repeat(7, 1, 1, 1)
    z[:, -1, 5] = act[:, 0]
    for k in range(1, 4):
        p = wm.predictor.inference(z[:, -3:])[:, :1].clone()
        p[:, :, 5] = act[:, k : k + 1]
        z = torch.cat([z, p], 1)
    z = torch.cat([z, wm.predictor.inference(z[:, -3:])[:, :1]], 1)
    torch.testing.assert_close(traj, z)
    # Q12: a window of 1 frame (the original's effective history at the first step) changes the predictions.
    wm1 = make_world_model(reorder=False)
    wm1.rollout_window = 1
    assert not torch.allclose(wm1.rollout(nodes, cand), traj)


@torch.no_grad()
def test_bf16_rollouts_run_the_predictor_under_autocast_and_return_fp32():
    """plan.precision=bf16: the predictor's calls run in bf16 (close to, not equal to, fp32), and the trajectory
    the cost reads stays fp32; fp32 is the default."""
    wm = make_world_model(reorder=False)
    assert wm.precision == "fp32"
    nodes = wm.encode(obs_of(STATE))
    cand = torch.randn(5, 4, 10, generator=torch.Generator().manual_seed(1))
    exact = wm.rollout(nodes, cand)
    wm.precision = "bf16"
    low = wm.rollout(nodes, cand)
    assert low.dtype == torch.float32 and low.shape == exact.shape
    assert not torch.equal(low, exact)  # the predictor really ran in bf16
    torch.testing.assert_close(low, exact, atol=0.1, rtol=0.05)
    with pytest.raises(ValueError, match=r"^plan\.precision='fp16'"):
        SlotWorldModel(wm.predictor, wm.encoder, wm.normalizer, action_block=5, precision="fp16")


def _perturbed_world_model(seed: int):
    wm = make_world_model()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in wm.predictor.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return wm


@torch.no_grad()
def test_ensemble_costs_a_candidate_by_the_mean_of_its_members_costs():
    """plan.ensemble: each member rolls every candidate out from its own nodes, and a candidate's cost is the mean
    of the members' costs; two copies of one model plan exactly as that model; the planner's protocol holds."""
    a, b = _perturbed_world_model(1), _perturbed_world_model(2)
    ens = EnsembleWorldModel([a, b])
    assert isinstance(ens, PlanningWorldModel) and ens.action_dim == 10 and ens.action_block == 5
    obs = obs_of(np.stack([STATE, STATE + 2]), np.random.default_rng(3).uniform(-1, 1, (1, 10)))
    goal = Goal(proprio=state_to_proprio(STATE[None] + 40)[0], state=STATE + 40)
    cand = torch.randn(6, 5, 10, generator=torch.Generator().manual_seed(4))
    nodes = ens.encode(obs)
    assert nodes.shape == (2, 12, 16)
    traj = ens.rollout(nodes, cand)
    assert traj.shape == (6, 7, 12, 16)
    ta, tb = a.rollout(a.encode(obs), cand), b.rollout(b.encode(obs), cand)
    torch.testing.assert_close(traj, torch.cat([ta, tb], dim=2))
    ca, cb = a.cost(ta, a.encode_goal(goal)), b.cost(tb, b.encode_goal(goal))
    assert not torch.allclose(ca, cb)  # the members disagree, so the mean is neither's cost
    torch.testing.assert_close(ens.cost(traj, ens.encode_goal(goal)), (ca + cb) / 2)
    twin = EnsembleWorldModel([a, _perturbed_world_model(1)])
    torch.testing.assert_close(twin.cost(twin.rollout(twin.encode(obs), cand), twin.encode_goal(goal)), ca)
    np.testing.assert_array_equal(ens.blocks_to_env(cand[0]), a.blocks_to_env(cand[0]))


def test_ensemble_refuses_members_that_plan_in_other_action_spaces():
    a, b = make_world_model(), make_world_model()
    b.normalizer = AuxNormalizer(b.normalizer.proprio_mean, b.normalizer.proprio_std, b.normalizer.action_mean * 2,
                                 b.normalizer.action_std)
    with pytest.raises(ValueError, match="ensemble member 1 plans in another action space"):
        EnsembleWorldModel([a, b])
    with pytest.raises(ValueError, match="at least two world models"):
        EnsembleWorldModel([a])


def test_rollout_with_observed_history_keeps_executed_actions(world_model):
    """With 3 observed frames the executed action nodes of the first two stay; block 0 goes into the third."""
    states = np.stack([STATE, STATE + 3, STATE + 6])
    executed = np.random.default_rng(2).uniform(-1, 1, (2, 10))
    nodes = world_model.encode(obs_of(states, executed))
    cand = torch.randn(5, 2, 10, generator=torch.Generator().manual_seed(1))
    traj = world_model.rollout(nodes, cand)
    assert traj.shape == (5, 5, 6, 16)
    torch.testing.assert_close(traj[:, :2], nodes[None, :2].expand(5, -1, -1, -1))
    torch.testing.assert_close(traj[:, 2, 5], world_model.predictor.action_encoder(cand)[:, 0])


def test_cost_is_matched_and_zero_at_the_goal(world_model):
    """Cost = matched slot MSE + proprio-node MSE at the final frame: 0 when the final frame is the goal, blind
    to goal slot order, and larger for a different goal."""
    goal_state = STATE + np.array([30, -20, 10, 5, 0.3, 0, 0])
    goal = world_model.encode_goal(Goal(proprio=state_to_proprio(goal_state), state=goal_state))
    assert goal.shape == (5, 16)
    traj = torch.zeros(3, 4, 6, 16)
    traj[:, -1, :4] = goal[:4]
    traj[:, -1, 4] = goal[4]
    traj[1, -1, :4] = goal[[2, 0, 3, 1]]  # permuted slots: still zero
    traj[2, -1, 4] += 1.0  # proprio off by 1 in every dim -> cost 1 * proprio_weight
    cost = world_model.cost(traj, goal)
    torch.testing.assert_close(cost, torch.tensor([0.0, 0.0, 1.0]))
    other = world_model.encode_goal(Goal(proprio=state_to_proprio(STATE), state=STATE))
    assert float(world_model.cost(traj[:1], other)) > 0


@torch.no_grad()
def test_scipy_matching_mode_gives_the_same_plan_costs():
    """matching='scipy' (the original's per-candidate host loop) and the batched default agree on rollouts and
    costs, with slot re-matching during the rollout switched on."""
    fast, slow = make_world_model(), make_world_model()
    slow.matching = "scipy"
    nodes = fast.encode(obs_of(STATE))
    goal_state = STATE + np.array([30, -20, 10, 5, 0.3, 0, 0])
    goal = fast.encode_goal(Goal(proprio=state_to_proprio(goal_state), state=goal_state))
    cand = torch.randn(9, 3, 10, generator=torch.Generator().manual_seed(3))
    a, b = fast.rollout(nodes, cand), slow.rollout(nodes, cand)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(fast.cost(a, goal), slow.cost(b, goal))


# --------------------------------------------------------------------------------------------- original Push-T files

TINY = [str(REPO / "configs/pusht/state_slots.yaml"), "model.slot_dim=16", "model.heads=2", "model.depth=1",
        "model.mlp_dim=32",
        "run.device=cpu"]


@pytest.fixture(scope="module")
def pusht_store(tmp_path_factory):
    """A tiny `cjepa pusht` state-slot store (3 training episodes, 1 held-out expert episode; about 2 s)."""
    from cjepa.cli import main

    out = tmp_path_factory.mktemp("pusht")
    assert main(["pusht", "-c", *TINY, f"data.pusht.out={out}", "data.pusht.videos=false", "data.pusht.expert_train=2",
                 "data.pusht.random_train=1", "data.pusht.expert_val=1", "data.pusht.random_steps=30"]) == 0
    return out / "slots"


def original_pusht_file(path, model) -> None:
    """Save ``model``'s weights as the original Push-T training leaves them: the state_dict of its Lightning wrapper
    (every key under ``model.``), Conv1d(kernel 1) aux embedders, and the frozen VideoSAUR pieces it carries."""
    sd = {"model." + k: (v[..., None] if k.endswith("patch_embed.weight") else v) for k,
          v in model.state_dict().items()}
    sd["model.encoder.backbone.embeddings.cls_token"] = torch.randn(1, 1, 384)
    sd["model.encoder.backbone.encoder.layer.0.norm1.weight"] = torch.randn(384)
    sd["model.slot_attention.backbone.corrector.to_q.weight"] = torch.randn(16, 16)
    sd["model.initializer.backbone.mean"] = torch.randn(1, 1, 16)
    torch.save(sd, path)


def reference_model(*overrides):
    from cjepa.config import load_config
    from cjepa.models.predictor import build_predictor

    cfg = load_config([TINY[0]], [*TINY[1:], "model.layout=reference", *overrides])
    torch.manual_seed(1)
    return cfg, build_predictor(cfg.model).eval()


@torch.no_grad()
def test_plain_original_state_dict_loads_with_statistics_from_the_store(tmp_path, pusht_store):
    """The original layout loads into the reference-layout model from the config (same outputs as the model it was
    saved from), the frozen encoder is reported, and the normaliser is the store's training-split statistics."""
    from cjepa.data.slot_store import SlotSplit
    from cjepa.data.windows import SlotWindows, per_split_window_normalizer
    from cjepa.plan.world_model import load_predictor_checkpoint, normalizer_from_store

    cfg, source = reference_model()
    original_pusht_file(tmp_path / "pusht_object_state_dict.pt", source)
    loaded = load_predictor_checkpoint(str(tmp_path / "pusht_object_state_dict.pt"), config=cfg,
                                       dataset=str(pusht_store))
    assert "left out 4 frozen encoder tensors (encoder, initializer, slot_attention)" in loaded.note
    nodes = torch.randn(2, 3, 6, 16)
    torch.testing.assert_close(loaded.model.inference(nodes), source.inference(nodes), rtol=0, atol=0)
    prop, act = torch.randn(2, 3, 4), torch.randn(2, 3, 10)
    torch.testing.assert_close(loaded.model.nodes(nodes[:, :, :4], prop, act), source.nodes(nodes[:, :, :4], prop, act))
    train = SlotSplit(pusht_store, "train")
    p = np.concatenate([train.extra(k, "proprio") for k in train]).astype(np.float64)
    a = np.concatenate([train.extra(k, "action") for k in train]).astype(np.float64)
    norm = loaded.normalizer
    np.testing.assert_allclose(norm.proprio_mean, np.nanmean(p, 0), rtol=1e-5)
    np.testing.assert_allclose(norm.proprio_std, np.nanstd(p, 0), rtol=1e-5)
    np.testing.assert_allclose(norm.action_mean, np.tile(np.nanmean(a, 0), 5), rtol=1e-5)  # 5-step chunks
    np.testing.assert_allclose(norm.action_std, np.tile(np.nanstd(a, 0), 5), rtol=1e-5)
    # data.aux_norm=per_split: the original's statistics over the split's windows, as training with that rule stores
    # them. The last window of every episode reaches its NaN-padded final action, so they are not finite here, and
    # planning refuses them rather than executing NaN actions.
    from cjepa.config import ConfigError

    cfg_w, _ = reference_model("data.aux_norm=per_split")
    prop = {k: train.extra(k, "proprio") for k in train}
    act = {k: train.extra(k, "action") for k in train}
    expect = per_split_window_normalizer(SlotWindows(train, 3, 1, 5, proprio=prop, action=act))  # T_h, T_p, frameskip
    windowed = normalizer_from_store(str(pusht_store), "train", cfg_w.model, 5, "per_split")
    for k, v in expect.state_dict().items():
        torch.testing.assert_close(windowed.state_dict()[k], v, rtol=0, atol=0, equal_nan=True)
    with pytest.raises(ConfigError, match=r"data.aux_norm=per_split\).*not finite at action_mean\[8, 9\]"):
        load_predictor_checkpoint(str(tmp_path / "pusht_object_state_dict.pt"), config=cfg_w, dataset=str(pusht_store))


def test_plan_command_runs_from_an_original_pusht_state_dict(tmp_path, pusht_store, capsys):
    """`cjepa plan --checkpoint <original-layout state_dict>` with model.layout=reference plans an episode end to end
    and records what it loaded; with the wrong layout or size it fails in one line naming the differing keys."""
    import json

    from cjepa.cli import main

    _, source = reference_model()
    ckpt = tmp_path / "pusht_object_state_dict.pt"
    original_pusht_file(ckpt, source)
    plan = ["plan.episodes=1", "plan.seeds=[0]", "plan.num_samples=6", "plan.topk=2", "plan.iterations=1",
            "plan.videos=0",
            f"plan.out={tmp_path / 'plan'}", "--checkpoint", str(ckpt), "--dataset", str(pusht_store), "--no-progress"]
    assert main(["plan", "-c", *TINY, "model.layout=reference", *plan]) == 0
    res = json.loads((tmp_path / "plan" / "results.json").read_text())
    (model,) = res["models"]
    assert model["checkpoint"] == str(ckpt) and model["episodes"]["0"][0]["plans"] >= 1
    assert (
        "original Push-T layout" in model["loaded"] and f"normaliser fitted on {pusht_store}/train" in model["loaded"]
    )
    assert "left out 4 frozen encoder tensors" in capsys.readouterr().out

    assert main(["plan", "-c", *TINY, *plan]) == 2  # the cjepa layout has attention pre-norms the original lacks
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing keys: predictor.transformer.layers.0.0.norm.weight" in err
    assert "model.layout=reference" in err
    assert main(["plan", "-c", *TINY, "model.layout=reference", "model.mlp_dim=48", *plan]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "shapes differ: predictor.transformer.layers.0.1.1.weight (32, 16)" in err


def test_best_frame_cost_scores_the_cheapest_predicted_frame_only():
    """cost_frames="best": the cost of the cheapest predicted frame (the goal passed through mid-plan counts),
    never of an observed frame; "final" (the original) scores the last frame alone."""
    best = make_world_model()
    best.cost_frames = "best"
    goal_state = STATE + np.array([30, -20, 10, 5, 0.3, 0, 0])
    goal = best.encode_goal(Goal(proprio=state_to_proprio(goal_state), state=goal_state))
    nodes = best.encode(obs_of(STATE))  # one observed frame
    traj = torch.ones(2, 1 + 3, 6, 16)  # (C, T_obs + H, S + 2, D)
    traj[:, 1:, :4], traj[:, 1:, 4] = goal[:4] + 0.5, goal[4] + 0.5  # every predicted frame 0.5 off
    traj[0, 2, :4], traj[0, 2, 4] = goal[:4], goal[4]  # candidate 0 passes through the goal at block 2
    traj[1, 0, :4], traj[1, 0, 4] = goal[:4], goal[4]  # candidate 1's observed frame is the goal: not scored
    assert nodes.shape[0] == 1
    torch.testing.assert_close(best.cost(traj, goal), torch.tensor([0.0, 0.25 + 0.25]))
    final = make_world_model()
    torch.testing.assert_close(final.cost(traj, goal), torch.tensor([0.5, 0.5]))


def test_agent_weight_scales_the_goal_agent_slot():
    """agent_weight w: the agent slot's (slot 0 of the state-slot order) share of the matched slot MSE is
    scaled by w, the block's is not; w = 1 is the original cost."""
    wm = make_world_model()
    goal_state = STATE + np.array([30, -20, 10, 5, 0.3, 0, 0])
    goal = wm.encode_goal(Goal(proprio=state_to_proprio(goal_state), state=goal_state))
    traj = torch.zeros(2, 2, 6, 16)
    traj[:, -1, :4], traj[:, -1, 4] = goal[:4], goal[4]
    traj[0, -1, 0] += 1.0  # agent slot off by 1 in every dim: 16 / (4 * 16)
    traj[1, -1, 1] += 1.0  # block slot off by 1
    torch.testing.assert_close(wm.cost(traj, goal), torch.tensor([0.25, 0.25]))
    wm.agent_weight = 0.25
    torch.testing.assert_close(wm.cost(traj, goal), torch.tensor([0.0625, 0.25]))


def test_simulator_oracle_from_config_takes_the_oracle_cost_options(world_model):
    """plan.oracle_cost / oracle_agent_weight / oracle_final_weight reach the oracle's cost: on two planned paths
    whose best step ties, only the final-step weight separates them, by 0.01 x their last steps' cost."""
    from cjepa.config import PlanConfig
    from cjepa.plan.diagnose import state_cost
    from cjepa.plan.world_model import SimulatorWorldModel

    start = np.array([200.0, 200.0, 324.0, 300.0, 1.0, 0.0, 0.0])  # block 24 px off the goal below
    goal = np.array([200.0, 200.0, 300.0, 300.0, 1.0, 0.0, 0.0])
    paths = np.stack([np.tile(start, (10, 1)), np.tile(start, (10, 1))])  # (2, 10, 7)
    paths[1, 1:, 1] += np.linspace(10, 90, 9)  # the agent runs off after its first step
    traj = torch.from_numpy(np.concatenate([np.tile(start, (2, 1, 1)), paths], axis=1)).view(2, 11, 1, 7)
    costs = {}
    for w in (0.0, 0.01):
        oracle = SimulatorWorldModel.from_config(world_model, PlanConfig(oracle_cost="state_path",
                                                                         oracle_agent_weight=0.25,
                                                                         oracle_final_weight=w))
        assert (oracle.cost_space, oracle.agent_weight, oracle.final_weight) == ("state_path", 0.25, w)
        oracle.encode(obs_of(start[None]))
        costs[w] = oracle.cost(traj, oracle.encode_goal(Goal(proprio=state_to_proprio(goal), state=goal))).numpy()
    assert costs[0.0][0] == costs[0.0][1]
    last = state_cost(paths[:, -1], goal, agent_weight=0.25)
    np.testing.assert_allclose(costs[0.01] - costs[0.0], 0.01 * last, rtol=1e-5)
    assert costs[0.01][0] < costs[0.01][1]


def test_simulator_oracle_success_first_scores_steps_by_the_rule_first(world_model):
    """plan.oracle_success_first: the state_path cost takes each step's success_first_cost; a path through a
    successful step beats one whose best step is a miss that the agent weight alone would rank first."""
    from cjepa.config import PlanConfig
    from cjepa.plan.diagnose import state_cost, success_first_cost
    from cjepa.plan.world_model import SimulatorWorldModel

    goal = np.array([200.0, 200.0, 300.0, 300.0, 1.0, 0.0, 0.0])
    start = goal + [0, 60, 60, 0, 0, 0, 0]
    paths = np.stack([np.tile(start, (4, 1)), np.tile(start, (4, 1))])  # (2, 4, 7)
    paths[0, 2] = goal + [10, 0, 0, 10, 0, 0, 0]  # passes through a success
    paths[1, 2] = goal + [25, 0, 0, 0, 0, 0, 0]  # block on the goal, agent 25 px off: a miss
    traj = torch.from_numpy(np.concatenate([np.tile(start, (2, 1, 1)), paths], axis=1)).view(2, 5, 1, 7)
    costs = {}
    for first in (False, True):
        oracle = SimulatorWorldModel.from_config(world_model, PlanConfig(oracle_cost="state_path",
                                                                         oracle_agent_weight=0.1,
                                                                         oracle_success_first=first))
        oracle.encode(obs_of(start[None]))
        costs[first] = oracle.cost(traj, oracle.encode_goal(Goal(proprio=state_to_proprio(goal), state=goal))).numpy()
    assert costs[False][1] < costs[False][0]
    assert costs[True][0] < costs[True][1]
    np.testing.assert_allclose(costs[True], success_first_cost(paths, goal, agent_weight=0.1).min(axis=1), rtol=1e-6)
    np.testing.assert_allclose(costs[False], state_cost(paths, goal, agent_weight=0.1).min(axis=1), rtol=1e-6)


def test_simulator_oracle_placed_agent_weight_reaches_the_state_path_cost(world_model):
    """plan.oracle_agent_weight_placed: the state_path cost takes each step's agent weight from whether its block
    is placed. A path that places the block and leaves the agent 150 px off leads at weight 0.1 alone and falls
    behind one that only closes in once the agent counts fully there; unset, the cost is weight 0.1's."""
    from cjepa.config import PlanConfig
    from cjepa.plan.diagnose import state_cost
    from cjepa.plan.world_model import SimulatorWorldModel

    goal = np.array([200.0, 200.0, 300.0, 300.0, 1.0, 0.0, 0.0])
    start = goal + [150, 0, 40, 0, 0, 0, 0]  # cost 5.625 + 4 at weight 0.1
    paths = np.stack([np.tile(start, (4, 1)), np.tile(start, (4, 1))])  # (2, 4, 7)
    paths[0, 1:] = goal + [150, 0, 0, 0, 0, 0, 0]  # block placed, agent 150 px off: 5.625 at 0.1, 56.25 at 1
    paths[1, 2] = goal + [150, 0, 30, 0, 0, 0, 0]  # block 30 px off, not placed: 5.625 + 2.25 at either
    traj = torch.from_numpy(np.concatenate([np.tile(start, (2, 1, 1)), paths], axis=1)).view(2, 5, 1, 7)
    costs = {}
    for placed in (None, 1.0):
        oracle = SimulatorWorldModel.from_config(world_model, PlanConfig(oracle_cost="state_path",
                                                                         oracle_agent_weight=0.1,
                                                                         oracle_agent_weight_placed=placed))
        assert oracle.agent_weight_placed == placed
        oracle.encode(obs_of(start[None]))
        costs[placed] = oracle.cost(traj, oracle.encode_goal(Goal(proprio=state_to_proprio(goal), state=goal))).numpy()
    assert costs[None][0] < costs[None][1] and costs[1.0][1] < costs[1.0][0]
    np.testing.assert_allclose(costs[None], state_cost(paths, goal, agent_weight=0.1).min(axis=1), rtol=1e-6)
    np.testing.assert_allclose(costs[1.0], [9.625, 7.875], rtol=1e-6)
    with pytest.raises(ValueError, match="agent_weight_placed"):
        SimulatorWorldModel(world_model, cost_space="state_path", agent_weight_placed=-1.0)


def test_simulator_oracle_placed_first_ranks_the_placing_path_first(world_model):
    """plan.oracle_placed_first: with the placed weight 1 alone, the path that places the block with the agent
    150 px off is ranked behind one that stops the block 30 px short; ranked placed-first it is ahead again."""
    from cjepa.config import PlanConfig
    from cjepa.plan.world_model import SimulatorWorldModel

    goal = np.array([200.0, 200.0, 300.0, 300.0, 1.0, 0.0, 0.0])
    start = goal + [150, 0, 40, 0, 0, 0, 0]
    paths = np.stack([np.tile(start, (4, 1)), np.tile(start, (4, 1))])  # (2, 4, 7)
    paths[0, 1:] = goal + [150, 0, 0, 0, 0, 0, 0]
    paths[1, 2] = goal + [150, 0, 30, 0, 0, 0, 0]
    traj = torch.from_numpy(np.concatenate([np.tile(start, (2, 1, 1)), paths], axis=1)).view(2, 5, 1, 7)
    costs = {}
    for first in (False, True):
        oracle = SimulatorWorldModel.from_config(world_model, PlanConfig(oracle_cost="state_path",
                                                                         oracle_agent_weight=0.1,
                                                                         oracle_agent_weight_placed=1.0,
                                                                         oracle_placed_first=first))
        assert oracle.placed_first == first
        oracle.encode(obs_of(start[None]))
        costs[first] = oracle.cost(traj, oracle.encode_goal(Goal(proprio=state_to_proprio(goal), state=goal))).numpy()
    assert costs[False][1] < costs[False][0] and costs[True][0] < costs[True][1]
    np.testing.assert_allclose(costs[True][0], 56.25, rtol=1e-6)
