"""The ``rollout`` section: autoregressive rollouts of a trained predictor and their error evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from cjepa.config.errors import ConfigError


@dataclass(kw_only=True)
class RolloutConfig:
    obs_frames: int = 128  # observed frames per video (CLEVRER)
    target_frames: int = 160  # roll out to this length
    batch_size: int = 64
    checkpoint: str = ""  # predictor weights for `cjepa rollout` (model.pt, a run dir, or an original ckpt)
    out: str = ""  # slot store to write; default: <run dir>/rollout
    export_pickle: str = ""  # also write the original pickle format here
    eval_videos: int = 32  # rollout-error evaluation after training: number of held-out videos (0: skip it)
    eval_chains: int = 2  # autoregressive predictor calls per window in the error curve (0: skip the evaluation)

    @property
    def skip_note(self) -> str:
        """Why the final rollout evaluation is skipped ('' when it runs)."""
        return (
            "skipped: rollout.eval_videos=0"
            if self.eval_videos == 0
            else "skipped: rollout.eval_chains=0"
            if self.eval_chains == 0
            else ""
        )

    def validate(self) -> None:
        if self.target_frames < self.obs_frames:
            raise ConfigError("rollout.target_frames must be >= rollout.obs_frames")
        if self.eval_videos < 0 or self.eval_chains < 0:
            raise ConfigError(
                f"rollout.eval_videos ({self.eval_videos}) and rollout.eval_chains ({self.eval_chains}) "
                "must be >= 0 (0 skips the final rollout evaluation)"
            )
