"""Contracts of rollouts: CLEVRER's interleaved offset chains (128 -> 160) and the rollout-error curve."""

import numpy as np
import torch

from cjepa.eval.rollout import chain_history_indices, interleave_source, roll_chain, rollout_error, rollout_interleaved


def test_chain_history_indices_match_the_original():
    """fs=2, T_h=6: chain 0 starts from frames 116..126, chain 1 from 117..127."""
    assert chain_history_indices(128, 6, 2, 0) == [116, 118, 120, 122, 124, 126]
    assert chain_history_indices(128, 6, 2, 1) == [117, 119, 121, 123, 125, 127]
    assert [interleave_source(i, 2) for i in range(5)] == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]


class FrameClock(torch.nn.Module):
    """A 'predictor' that extrapolates a per-frame counter linearly: exact if rollout indexing is right."""

    history_frames, pred_frames = 6, 10

    def inference(self, h):  # h (B, T_h, S, D) holding frame numbers
        step = h[:, -1:] - h[:, -2:-1]
        return h[:, -1:] + step * torch.arange(1, self.pred_frames + 1, dtype=h.dtype).view(1, -1, 1, 1)


def test_interleaved_rollout_continues_every_frame_index():
    """With a linear extrapolator on frame numbers, output frame i holds i for all 160 frames (two chains of
    16 frames each, 2 predictor calls per chain, history = last T_h predicted frames)."""
    obs = torch.arange(128, dtype=torch.float32).view(1, 128, 1, 1).expand(2, 128, 3, 4).contiguous()
    out = rollout_interleaved(FrameClock(), obs, 160, 2)
    assert out.shape == (2, 160, 3, 4)
    assert torch.equal(out[0, :, 0, 0], torch.arange(160, dtype=torch.float32))


def test_roll_chain_history_update_when_T_h_exceeds_T_p():
    """History shifts by T_p and appends the prediction when T_h > T_p (Push-T style 3/1)."""
    seen = []

    def step(h):
        seen.append(h[0, :, 0, 0].tolist())
        return h[:, -1:] + 1

    h = torch.tensor([0.0, 1.0, 2.0]).view(1, 3, 1, 1)
    out = roll_chain(step, h, 3, 3)
    assert out[0, :, 0, 0].tolist() == [3, 4, 5]
    assert seen == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]


def test_rollout_error_against_copy_baseline():
    """A perfect predictor has zero error while copying the last frame grows with the horizon."""
    T = 60
    v = (np.arange(T, dtype=np.float32)[:, None, None] * 0.1) * np.ones((1, 2, 3), np.float32)
    clock = FrameClock()
    clock.pred_frames = 4
    res = rollout_error(lambda h, _: clock.inference(h), {"a": v}, history_frames=6, pred_frames=4, frameskip=2,
                        chains=2, max_videos=1, device="cpu")
    assert len(res["mse"]) == 8 and max(res["mse"]) < 1e-10
    assert all(b > a for a, b in zip(res["baseline_mse"], res["baseline_mse"][1:]))
