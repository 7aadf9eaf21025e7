"""The ``plan`` section: CEM-MPC planning and the Push-T evaluation protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from cjepa.config.errors import ConfigError


@dataclass(kw_only=True)
class PlanConfig:
    """CEM-MPC planning and the Push-T evaluation protocol (spec sections 2.6, 2.7, 3)."""

    checkpoint: str = ""  # world model to plan with: a checkpoint dir or a run dir (its latest checkpoint)
    baseline_checkpoint: str = ""  # optional second model evaluated on the same episodes (e.g. OC-JEPA, no masking)
    # More learned world models planned together with plan.checkpoint as one ensemble: a candidate's cost is the mean
    # of the members' costs (cjepa.plan.world_model.EnsembleWorldModel). Trained on the same store. Empty = one model.
    ensemble: list[str] = field(default_factory=list)
    dataset: str = ""  # Push-T state-slot store (cjepa pusht) holding the held-out expert episodes
    # Also evaluate the simulator as the world model (true dynamics, same embedding and cost as plan.checkpoint):
    # the upper bound of CEM + cost under the protocol. Slow on a CPU (every candidate is simulated).
    oracle: bool = False
    # The oracle's cost: "embedding" = the model's cost over embedded simulator states (the upper bound of the
    # protocol); "state" = the success rule's geometry on the true state (cjepa.plan.diagnose.state_cost), which
    # separates what CEM can do from what the embedding lets it do; "state_path" = that cost at the plan's best
    # env step (success is checked after every step).
    oracle_cost: Literal["embedding", "state", "state_path"] = "embedding"
    # State costs only: the weight of the agent's share of the position error. 0.25 lets the block's progress
    # lead, which finds the detours around the block that the equal weighting misses (benchmarks/results/oracle).
    oracle_agent_weight: float = 1.0
    # State costs only: the agent's weight at the steps whose block is within the success rule's tolerances of its
    # goal (cjepa.plan.diagnose.block_placed). A light plan.oracle_agent_weight lets the block lead; this one (e.g.
    # 1) then brings the agent home once the block is placed. None = plan.oracle_agent_weight everywhere.
    oracle_agent_weight_placed: Optional[float] = None
    # "state_path" only: + this x the plan's last-step cost. A small weight breaks the ties of the best-step minimum
    # where every candidate's best step is its first (a start just outside the tolerance), ranking them by where
    # they end; 0 = the best step alone (cjepa.plan.diagnose.best_step_cost).
    oracle_final_weight: float = 0.0
    # "state_path" only: every env step that meets the success rule outranks every step that does not, whatever
    # plan.oracle_agent_weight makes of them (cjepa.plan.diagnose.success_first_cost); false = the weighted cost alone.
    oracle_success_first: bool = False
    # "state_path" only: every env step whose block is placed outranks every step whose block is not
    # (cjepa.plan.diagnose.placed_first; successes stay first with plan.oracle_success_first), so a heavier
    # plan.oracle_agent_weight_placed never makes placing the block the worse move.
    oracle_placed_first: bool = False
    # Observation -> slots: "state" = the fixed state-slot embedding of the simulator state (plan.dataset is the
    # state-slot store); "pixels" = the object-centric encoder plan.encoder_checkpoint on rendered frames and on a
    # rendered goal image (plan.dataset is the slot store that encoder extracted, which the predictor trained on).
    encoder: Literal["state", "pixels"] = "state"
    encoder_checkpoint: str = ""  # plan.encoder=pixels: the encoder's checkpoint or run directory
    # CEM (stable-worldmodel's CEMSolver as configured by C-JEPA)
    num_samples: int = 300
    topk: int = 30  # elites
    iterations: int = 30
    var_scale: float = 1.0  # initial std (the original calls it var)
    horizon: int = 5  # planned action blocks
    receding_horizon: int = 5  # blocks executed before replanning
    action_block: int = 5  # env steps per block (= the predictor's frameskip)
    warm_start: bool = True  # seed the next solve with the unexecuted blocks (moot when receding == horizon)
    # Observed frames fed to the world model at each plan (Q12). 1 = the original (world.history_size=1); up to
    # model.history_frames uses the past frames (stride action_block) and the executed actions between them.
    history_obs: int = 1
    # Frames the predictor sees per rollout call; 0 = model.history_frames (the original: 3, Q12).
    rollout_window: int = 0
    reorder_slots: bool = True  # re-match predicted slots to the previous frame after each call (spec 2.6)
    proprio_weight: float = 1.0  # cost = matched slot MSE + this * proprio-node MSE (spec 2.7)
    # The learned model's cost over its rollout: "final" = the last predicted frame (the original, spec 2.7);
    # "best" = the cheapest predicted block boundary (success is checked after every env step, so a plan that
    # passes through the goal solves the episode; the oracle's state_path cost, at block resolution).
    cost_frames: Literal["final", "best"] = "final"
    # Weight of the goal's agent slot in the slot term (the state-slot encoder's slot 0). Below 1 lets the block's
    # progress lead, as plan.oracle_agent_weight does for the oracle's state costs. 1 = the original's cost.
    agent_weight: float = 1.0
    # Precision of the world model's rollouts (cjepa.utils.precision): "bf16" runs the predictor under bf16 autocast
    # (outputs and the cost stay fp32), "auto" picks bf16 where the device computes it natively. CEM calls the
    # predictor ~150 times per plan on 300 candidates, so on a CPU with AMX this is most of a plan's time.
    # "fp32" (default) is the original's.
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    max_perm_slots: int = 7  # batched matching enumerates S! permutations up to this S; scipy above
    # "batched": every candidate's slot assignment in one tensor op; "scipy": one linear_sum_assignment per
    # candidate and rollout step on the host, as the original (Q13; slower, same result)
    matching: Literal["batched", "scipy"] = "batched"
    # The env does not clip actions and neither did the original; true keeps executed actions in [-1, 1].
    clip_actions: bool = False
    # evaluation protocol (spec 3.4)
    episodes: int = 50  # start/goal pairs per seed
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    goal_offset: int = 25  # goal = the same expert episode this many steps after the start
    budget: int = 50  # env steps per episode; success if the rule holds at any step
    eval_split: str = "val"  # held-out expert episodes (the original drew from its training split, Q12)
    videos: int = 3  # rendered episodes saved per model (seed 0); 0 = none
    # Processes that run the episodes of a seed in parallel (forked, one torch thread each). Every episode plans
    # with its own CEM stream (seed, episode index), so the results do not depend on this number.
    workers: int = 1
    video_size: int = 224
    out: str = ""  # results directory; default runs/<run.name>/plan

    def validate(self) -> None:
        if self.topk < 1 or self.topk > self.num_samples:
            raise ConfigError(f"plan.topk={self.topk} must be in 1..plan.num_samples={self.num_samples}")
        if self.topk < 2:
            raise ConfigError("plan.topk must be >= 2: the elite standard deviation needs two elites")
        if self.iterations < 1 or self.horizon < 1 or self.action_block < 1:
            raise ConfigError("plan.iterations, plan.horizon and plan.action_block must be >= 1")
        if not 1 <= self.receding_horizon <= self.horizon:
            raise ConfigError(
                f"plan.receding_horizon={self.receding_horizon} must be in 1..plan.horizon={self.horizon}"
            )
        if self.horizon * self.action_block > self.budget:
            raise ConfigError(
                f"plan.horizon * plan.action_block = {self.horizon * self.action_block} exceeds "
                f"plan.budget={self.budget} (the original asserts this)"
            )
        if self.history_obs < 1 or self.rollout_window < 0:
            raise ConfigError("plan.history_obs must be >= 1 and plan.rollout_window >= 0")
        if self.agent_weight < 0:
            raise ConfigError(f"plan.agent_weight={self.agent_weight} must be >= 0")
        if self.oracle_agent_weight < 0:
            raise ConfigError(f"plan.oracle_agent_weight={self.oracle_agent_weight} must be >= 0")
        if self.oracle_agent_weight_placed is not None and self.oracle_agent_weight_placed < 0:
            raise ConfigError(f"plan.oracle_agent_weight_placed={self.oracle_agent_weight_placed} must be >= 0")
        if self.oracle_final_weight < 0:
            raise ConfigError(f"plan.oracle_final_weight={self.oracle_final_weight} must be >= 0")
        if self.encoder == "pixels":
            self._validate_pixels()
        if self.ensemble and self.encoder != "state":
            raise ConfigError("plan.ensemble plans with several state-slot models; with plan.encoder=pixels each "
                              "member would need its own encoder")
        if self.workers < 1:
            raise ConfigError(f"plan.workers={self.workers} must be >= 1")
        if self.episodes < 1 or not self.seeds or self.goal_offset < 1:
            raise ConfigError("plan.episodes and plan.goal_offset must be >= 1 and plan.seeds non-empty")

    def _validate_pixels(self) -> None:
        if not self.encoder_checkpoint:
            raise ConfigError("plan.encoder=pixels needs plan.encoder_checkpoint (the encoder's checkpoint or run "
                              "directory)")
        if self.agent_weight != 1.0:
            raise ConfigError(f"plan.agent_weight={self.agent_weight} weighs slot 0, the state-slot encoder's agent; a "
                              "pixel encoder's slot 0 is not the agent (use 1 with plan.encoder=pixels)")
        if self.oracle:
            raise ConfigError("plan.oracle embeds simulator states with the state-slot encoder; evaluate it with "
                              "plan.encoder=state on the state-slot store")
