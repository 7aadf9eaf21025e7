"""benchmarks/planner_diagnosis.py: rank correlation, selection quality, open-loop errors and plan outcomes on
hand-made inputs; replayed candidates scored by the success rule; the three subcommands on a tiny store."""

import json

import numpy as np
import pytest
import torch

from benchmarks import planner_diagnosis as pdg
from cjepa.plan.world_model import Observation, SimulatorWorldModel
from tests.plan.conftest import make_world_model


def test_ranks_share_ties_and_spearman_matches_the_definition():
    assert pdg.ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert pdg.spearman([1, 2, 3, 4], [10, 20, 30, 400]) == pytest.approx(1.0)
    assert pdg.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # no ties: 1 - 6 sum d^2 / (n (n^2 - 1)); ranks of b are [2, 1, 4, 3, 5] -> d^2 sum 4 -> 1 - 24 / 120
    assert pdg.spearman([1, 2, 3, 4, 5], [0.2, 0.1, 0.9, 0.5, 1.3]) == pytest.approx(0.8)
    # ties: Pearson correlation of the mid-ranks (hand computed: ranks [1.5, 1.5, 3, 4] vs [1, 2, 3, 4])
    ra, rb = np.array([1.5, 1.5, 3, 4]) - 2.5, np.array([1, 2, 3, 4]) - 2.5
    assert pdg.spearman([5, 5, 6, 7], [1, 2, 3, 4]) == pytest.approx((ra * rb).sum() / np.sqrt((ra**2).sum()
                                                                                               * (rb**2).sum()))
    assert np.isnan(pdg.spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="1-d arrays"):
        pdg.spearman([1, 2], [1, 2, 3])


def test_selection_quality_judges_the_models_pick_by_its_true_outcome():
    model = np.array([0.1, 0.2, 0.3, 0.4, 0.5])  # the model prefers 0, then 1, ...
    true = np.array([2.0, 0.5, 3.0, 1.0, 4.0])  # truly best: 1, then 4th (index 3), then 0
    success = np.array([False, True, False, True, False])
    q = pdg.selection_quality(model, true, success, topk=2)
    assert q["chosen_true_cost"] == 2.0 and q["best_true_cost"] == 0.5
    assert q["chosen_true_rank"] == pytest.approx(2 / 4)  # third best of five
    assert not q["chosen_success"] and q["any_success"]
    assert q["elite_success"] == 0.5 and q["true_elite_success"] == 1.0 and q["all_success"] == pytest.approx(0.4)
    assert q["spearman"] == pytest.approx(pdg.spearman(model, true))
    with pytest.raises(ValueError, match="topk"):
        pdg.selection_quality(model, true, success, topk=6)


def test_slot_errors_per_block_and_object():
    true = torch.zeros(3, 2, 6, 4)  # (N, H, S + 2, D): 4 object slots, proprio, action
    true[:, :, :4] = torch.arange(4.0)[:, None] * 10  # distinct slots
    pred = true.clone()
    pred[:, 1, 0] += 1.0  # agent slot off by 1 at block 2: MSE 1 (per slot), matched 4 / 16
    pred[:, 0, 4] += 2.0  # proprio off by 2 at block 1
    err = pdg.slot_errors(pred, true)
    assert err["agent_slot"] == [0.0, 1.0] and err["block_slot"] == [0.0, 0.0]
    assert err["slots_matched"] == pytest.approx([0.0, 0.25]) and err["proprio"] == [4.0, 0.0]
    with pytest.raises(ValueError, match="slot_errors"):
        pdg.slot_errors(pred[:, :, :3], true[:, :, :3])


def test_plan_outcome_names_the_failing_part():
    assert pdg.plan_outcome(True, True) == pdg.plan_outcome(False, True) == "reached"
    assert pdg.plan_outcome(True, False) == "prediction"
    assert pdg.plan_outcome(False, False) == "planning"


def test_true_costs_replay_candidates_from_the_encoded_state():
    """Replayed candidates are scored by the success rule's geometry at their best env step: standing still
    on the goal succeeds at cost near 0; running far away does worse; a goal 200 px off is reached by neither."""
    sim = SimulatorWorldModel(make_world_model())
    start = np.array([200.0, 300.0, 250.0, 220.0, 0.7, 0.0, 0.0])
    sim.encode(Observation(proprio=start[None, [0, 1, 5, 6]], state=start[None]))
    still = torch.from_numpy(-sim.model.normalizer.action_mean / sim.model.normalizer.action_std).float()
    cand = torch.stack([still.expand(5, 10), torch.full((5, 10), 6.0)])  # (2, H, A): raw 0, raw ~3 per step
    cost, success = pdg.true_costs(sim, cand, start, agent_weight=0.25)
    assert cost[0] < 0.1 and success[0] and cost[1] > cost[0]  # float32 round trip: a sub-px drift
    far = start + np.array([0, 0, 200.0, 0, 0, 0, 0])
    cost, success = pdg.true_costs(sim, cand, far, agent_weight=0.25)
    assert not success.any() and (cost > 50).all()


@pytest.mark.slow
def test_subcommands_write_records_on_a_tiny_store(tmp_path):
    """accuracy, fidelity and episodes run end to end on a two-episode store and a 3-step model, and each
    appends one record with provenance and the load of the machine."""
    from cjepa.cli import main

    data = tmp_path / "data"
    common = ["-c", "configs/pusht/state_slots.yaml", "model.slot_dim=16", "model.heads=2", "model.depth=1",
              "model.mlp_dim=32", f"data.path={data / 'slots'}", f"run.out_dir={tmp_path / 'runs'}", "run.device=cpu"]
    assert main(["pusht", *common, f"data.pusht.out={data}", "data.pusht.videos=false", "data.pusht.expert_train=2",
                 "data.pusht.random_train=1", "data.pusht.expert_val=2", "data.pusht.random_steps=30"]) == 0
    assert main(["train", *common, "run.name=cj", "train.max_steps=3", "data.batch_size=8", "data.val_batch_size=16",
                 "data.val_max_windows=8", "train.val_every=3", "train.ckpt_every=3", "rollout.eval_videos=0",
                 "rollout.eval_chains=0", "optim.warmup_steps=0", "--no-progress"]) == 0
    out = tmp_path / "d.jsonl"
    base = ["--dataset", str(data / "slots"), "--checkpoint", str(tmp_path / "runs" / "cj"), "--out", str(out),
            "--pairs-drawn", "2", "--episodes", "1", "--cem-samples", "6", "--cem-topk", "2", "--cem-iterations", "2"]
    assert pdg.main(["accuracy", *base, "--samples", "3", "--decode", "1"]) == 0
    assert pdg.main(["fidelity", *base, "--iterations-at", "1", "2"]) == 0
    assert pdg.main(["episodes", *base, "--cost-frames", "best", "--agent-weight", "0.25"]) == 0
    acc, fid, epi = (json.loads(line) for line in out.read_text().splitlines())
    for rec in (acc, fid, epi):
        assert {"git_sha", "machine", "date_utc", "argv", "load_avg_at_start"} <= set(rec)
    assert acc["expert"]["sequences"] == 1 and acc["cem_random"]["sequences"] == 3
    assert acc["precision"] == epi["precision"] == "fp32"  # the planner's default, recorded by every kind
    assert len(acc["cem_random"]["model"]["slots_matched"]) == 5 and acc["cem_random"]["decoded_final"]
    assert set(fid["summary"]) == {"iter1_vs_true_embedding", "iter1_vs_success_rule", "iter2_vs_true_embedding",
                                   "iter2_vs_success_rule"}
    assert epi["cost_frames"] == "best" and epi["agent_weight"] == 0.25 and epi["episodes"] == 1
    plans = epi["per_episode"][0]["plans"]
    assert plans and all(p["outcome"] in ("reached", "prediction", "planning") for p in plans)
    assert sum(epi["plan_outcomes"].values()) == len(plans)

    # the same episode planned by an ensemble (the model twice), replanning after every block, rollouts in bf16
    assert pdg.main(["episodes", *base, "--ensemble", str(tmp_path / "runs" / "cj"), "--receding-horizon", "1",
                     "--precision", "bf16"]) == 0
    ens = json.loads(out.read_text().splitlines()[-1])
    assert ens["ensemble"] == ["cj"] and ens["receding_horizon"] == 1 and ens["precision"] == "bf16"
    assert len(ens["per_episode"][0]["plans"]) > len(plans)  # one plan per executed block, not per horizon
    with pytest.raises(SystemExit):
        pdg.main(["accuracy", *base, "--ensemble", str(tmp_path / "runs" / "cj")])


def test_past_observation_takes_the_episodes_own_frames_and_actions():
    states = np.tile(np.arange(20.0)[:, None], (1, 7))  # state t holds t everywhere
    actions = np.stack([np.arange(20.0), -np.arange(20.0)], axis=1)  # (20, 2)
    obs = pdg.past_observation(states, actions, 12, 3, 5)
    assert obs.state[:, 0].tolist() == [2.0, 7.0, 12.0] and obs.proprio.shape == (3, 4)
    assert obs.actions.shape == (2, 10) and obs.actions[0, ::2].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert obs.actions[1, 1::2].tolist() == [-7.0, -8.0, -9.0, -10.0, -11.0]
    young = pdg.past_observation(states, actions, 3, 3, 5)  # fewer frames near the beginning
    assert young.state[:, 0].tolist() == [3.0] and young.actions is None
