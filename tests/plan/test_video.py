"""Episode videos: the slot decode behind the predicted panel, frame layout, and the panels of a real episode."""

import numpy as np
import pytest
import torch

from cjepa.data.pusht import StateSlotEmbedding
from cjepa.envs.pusht import PushTEnv, sample_state
from cjepa.plan.cem import CEM
from cjepa.plan.evaluate import run_episode
from cjepa.plan.mpc import MPCPlanner
from cjepa.plan.video import (
    _save_gif,
    decode_state_slots,
    episode_frame,
    label_height,
    load_video,
    log_episode_videos,
    prediction_view,
    save_video,
)
from cjepa.plan.world_model import SimulatorWorldModel
from tests.plan.conftest import SLOT_DIM, make_world_model
from tests.plan.test_mpc import SimulatorWorldModel as RawStateModel
from tests.tensorboard_helpers import event_videos

SIZE = 32


def render(state, size=SIZE):
    env = PushTEnv(size)
    env.reset(state)
    return env.render()


def test_state_slot_decode_recovers_the_state():
    """On exact embeddings the decode returns the embedded poses (sub-pixel, sub-milliradian): the predicted
    panel shows what the slots say, not a guess."""
    emb = StateSlotEmbedding(SLOT_DIM, 2)
    rng = np.random.default_rng(1)
    for _ in range(3):
        state = sample_state(rng)
        got, residual = decode_state_slots(emb, emb(state[None])[0])
        np.testing.assert_allclose(got[:4], state[:4], atol=0.05)
        assert abs((got[4] - state[4] + np.pi) % (2 * np.pi) - np.pi) < 1e-3
        assert residual < 1e-4 and got[5:].tolist() == [0.0, 0.0]


def test_episode_frame_layout():
    a, b, c = (np.full((SIZE, SIZE, 3), v, np.uint8) for v in (10, 20, 30))
    f = episode_frame([a, b, c], ["step 0", "goal", "predicted"])
    h = label_height(SIZE)
    assert f.shape == (h + SIZE, 3 * SIZE, 3)
    assert (f[h:, SIZE : 2 * SIZE] == 20).all() and (f[h:, 2 * SIZE :] == 30).all()
    assert f[:h].max() > 0  # the labels are drawn
    with pytest.raises(ValueError, match="square RGB"):
        episode_frame([a, b[:5]], ["x", "y"])


START = np.array([150.0, 150.0, 330.0, 330.0, 0.5, 0.0, 0.0])
GOAL = np.array([400.0, 120.0, 200.0, 360.0, 2.0, 0.0, 0.0])  # far: not solved within the budget


def record(world_model, budget=12, seed=0):
    planner = MPCPlanner(world_model, CEM(num_samples=6, topk=2, iterations=1, seed=seed), horizon=1,
                         receding_horizon=1)
    return run_episode(PushTEnv(SIZE), planner, START, GOAL, budget, record=True)


def test_simulator_video_panels_are_observation_goal_and_the_plans_end():
    """The oracle predicts exactly, so the predicted panel of the plan made at frame t (one block of 5 steps)
    equals the observation 5 frames later; the goal panel is the rendered goal state throughout."""
    torch.manual_seed(0)
    res = record(SimulatorWorldModel(make_world_model(), cost_space="state"))
    assert not res.success and res.steps == 12 and res.plans == 3
    h = label_height(SIZE)
    assert res.frames.shape == (13, h + SIZE, 3 * SIZE, 3)
    obs, goal, pred = (res.frames[:, h:, i * SIZE : (i + 1) * SIZE] for i in range(3))
    for t in range(13):
        np.testing.assert_array_equal(goal[t], render(GOAL))
    np.testing.assert_array_equal(obs[0], render(START))
    np.testing.assert_array_equal(pred[0], obs[5])  # plan 1, made at frame 0, ends at frame 5
    for t in range(1,
                   11):  # frame t shows the plan whose action led to it: plan (t - 1) // 5 + 1, ending at its block end
        np.testing.assert_array_equal(pred[t], obs[5 * ((t - 1) // 5 + 1)])


def test_slot_model_video_has_three_panels_and_saves():
    """The C-JEPA slot model's panel is its rollout's final slots decoded and drawn: for the one plan of a
    one-block episode, the decode of the last predicted frame of that plan, not of the observed frame."""
    wm = make_world_model()
    assert prediction_view(wm, SIZE).label == "predicted plan end"
    planner = MPCPlanner(wm, CEM(num_samples=6, topk=2, iterations=1, seed=0), horizon=2, receding_horizon=2)
    res = run_episode(PushTEnv(SIZE), planner, START, GOAL, 5, record=True)
    assert res.plans == 1
    h = label_height(SIZE)
    assert res.frames.shape == (6, h + SIZE, 3 * SIZE, 3)
    np.testing.assert_array_equal(res.frames[-1, h:, SIZE : 2 * SIZE], render(GOAL))
    obs, plan = planner.last_solve
    last = wm.rollout(wm.encode(obs), plan[None])[0, -1, : wm.num_slots].numpy()  # (S, D) after both blocks
    expected = render(decode_state_slots(wm.encoder.embedding, last)[0])
    for t in range(6):
        np.testing.assert_array_equal(res.frames[t, h:, 2 * SIZE :], expected)
    assert not np.array_equal(expected, res.frames[0, h:, :SIZE])


def test_pixel_model_panel_is_the_decoder_drawing_of_its_predicted_slots():
    """A SAVi-pixel world model's panel is the SAVi decoder's frame of the last predicted slots of the plan, resized
    to the video's side; a VideoSAUR-pixel model (no RGB decoder) gets no panel."""
    from cjepa.models.predictor import build_predictor
    from cjepa.plan.video import resize_square
    from cjepa.plan.world_model import SlotWorldModel
    from tests.plan.conftest import tiny_model_config, tiny_normalizer
    from tests.plan.test_pixel_encoder import tiny_encoder

    enc = tiny_encoder()
    torch.manual_seed(0)
    wm = SlotWorldModel(build_predictor(tiny_model_config()).eval(), enc, tiny_normalizer(), action_block=5)
    assert prediction_view(wm, SIZE).label == "decoded plan end"
    planner = MPCPlanner(wm, CEM(num_samples=6, topk=2, iterations=1, seed=0), horizon=2, receding_horizon=2)
    res = run_episode(PushTEnv(SIZE), planner, START, GOAL, 5, record=True, pixel_size=enc.pixel_size)
    h = label_height(SIZE)
    assert res.plans == 1 and res.frames.shape == (6, h + SIZE, 3 * SIZE, 3)
    obs, plan = planner.last_solve
    last = wm.rollout(wm.encode(obs), plan[None])[0, -1, : wm.num_slots]  # (S, D) after both blocks
    expected = resize_square(enc.decode_frame(last), SIZE)
    for t in range(6):
        np.testing.assert_array_equal(res.frames[t, h:, 2 * SIZE :], expected)
    first = resize_square(enc.decode_frame(wm.encode(obs)[-1, : wm.num_slots]), SIZE)
    assert not np.array_equal(expected, first)  # the plan's end, not the observed frame

    class NoDecoder(type(enc)):
        has_pixel_decoder = False

    enc.__class__ = NoDecoder
    assert prediction_view(wm, SIZE) is None


def test_models_without_a_view_get_two_panels(tmp_path):
    res = record(RawStateModel(), budget=3)
    assert prediction_view(RawStateModel(), SIZE) is None
    assert res.frames.shape == (4, label_height(SIZE) + SIZE, 2 * SIZE, 3)
    path = save_video(res.frames, tmp_path / "ep.mp4")
    assert path.exists() and path.stat().st_size > 0


def test_episode_clips_go_to_tensorboard_as_videos(tmp_path):
    """An mp4 and a GIF episode file are read back and logged as videos ``<model>/episode/<file name>`` with every
    frame; the mp4's H.264 and the GIF palette change pixel values a little, not the clip."""
    from torch.utils.tensorboard import SummaryWriter

    T, H, W = 6, 16, 24
    clip = np.zeros((T, H, W, 3), np.uint8)
    for t in range(T):
        clip[t, :, 4 * t : 4 * t + 4] = (255, 255, 255)  # a bar moving right
    paths = [save_video(clip, tmp_path / "ep_mp4.mp4"), _save_gif(clip, tmp_path / "ep_gif.gif", 10)]
    assert all(np.abs(load_video(p).astype(int) - clip).mean() < 6 for p in paths)
    with SummaryWriter(str(tmp_path / "tb")) as w:
        tags = log_episode_videos(w, "cjepa", paths)
    assert tags == ["cjepa/episode/ep_mp4", "cjepa/episode/ep_gif"]
    for tag in tags:
        ((step, video),) = event_videos(tmp_path / "tb", tag)
        assert step == 0 and video.shape == clip.shape and np.abs(video.astype(int) - clip).mean() < 8
