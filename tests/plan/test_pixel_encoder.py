"""Planning from pixels (cjepa/plan/pixel_encoder.py): the encoder contract, the store check, and the whole chain
`cjepa pusht` (videos) -> SAVi -> `cjepa extract` -> predictor -> `cjepa plan plan.encoder=pixels` on a tiny
config (random-ish weights: plumbing, not skill)."""

import json

import numpy as np
import pytest
import torch

from cjepa.cli import main
from cjepa.config import ConfigError, load_config
from cjepa.envs.pusht import PushTEnv
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.plan.evaluate import run_episode
from cjepa.plan.mpc import MPCPlanner
from cjepa.plan.pixel_encoder import PixelSlotEncoder, load_pixel_encoder
from cjepa.plan.video import load_video
from cjepa.plan.world_model import Goal, Observation, SlotWorldModel
from tests.plan.conftest import tiny_model_config, tiny_normalizer

SAVI = ["encoder.kind=savi", "encoder.savi.resolution=32", "encoder.savi.dec_resolution=8",
        "encoder.savi.enc_channels=8", "encoder.savi.dec_channels=8", "encoder.savi.enc_kernel=3",
        "encoder.savi.dec_kernel=3", "encoder.slot_dim=16", "encoder.num_slots=4", "encoder.savi.slot_mlp=16",
        "encoder.savi.eval_kernel=mean"]


def tiny_encoder(*extra) -> PixelSlotEncoder:
    cfg = load_config([], [*SAVI, *extra]).encoder
    torch.manual_seed(0)
    return PixelSlotEncoder(build_object_encoder(cfg), cfg)


def frames(states, size=32, masks=False) -> np.ndarray:
    """The rendered frames of ``states`` (T, size, size, 3), or with ``masks`` their instance masks (T, size, size)."""
    env = PushTEnv(size)
    out = []
    for s in states:
        env.reset(s)
        out.append(env.render_masks() if masks else env.render())
    return np.stack(out)


def masks(states, size=32) -> np.ndarray:
    return frames(states, size, masks=True)


START = np.array([150.0, 300.0, 256.0, 256.0, 0.3, 0.0, 0.0])
OTHER = np.array([400.0, 100.0, 200.0, 300.0, 2.0, 0.0, 0.0])


def test_slots_of_a_frame_do_not_depend_on_the_call():
    """One frame gives the same slots as an observation's first frame and as a goal image: the planner compares
    the two, so any per-call noise or order effect would be a cost the plan cannot remove. With the sampled
    kernel, so that the seeding is what makes it so."""
    enc = tiny_encoder("encoder.savi.eval_kernel=sample")
    px = frames([START, OTHER])
    obs = enc.encode_slots(Observation(proprio=np.zeros((2, 4)), pixels=px))  # (2, S, D)
    goal = enc.encode_goal_slots(Goal(proprio=np.zeros(4), pixels=px[0]))  # (S, D)
    assert obs.shape == (2, 4, 16) and goal.shape == (4, 16)
    torch.testing.assert_close(obs[0], goal)
    torch.testing.assert_close(enc.encode_frames(px), obs)
    assert not torch.allclose(obs[0], obs[1])  # the second frame is encoded, not copied
    assert enc.pixel_size == 32


def test_rejects_what_it_cannot_read():
    enc = tiny_encoder()
    with pytest.raises(ValueError, match="uint8"):
        enc.encode_frames(frames([START]).astype(np.float32))
    with pytest.raises(ValueError, match="Observation.pixels"):
        enc.encode_slots(Observation(proprio=np.zeros((1, 4)), state=START[None]))
    with pytest.raises(ValueError, match="needs the instance mask"):
        tiny_encoder("encoder.savi.init=cues").encode_frames(frames([START]))


def test_conditional_encoder_seeds_its_slots_from_the_first_frames_objects():
    """A cued SAVi reads the first frame's instance mask (and only the first frame's): the observation's first
    frame and the goal image give the same slots for the same frame and mask, and another mask other slots."""
    enc = tiny_encoder("encoder.savi.init=cues")
    assert enc.needs_masks and not tiny_encoder().needs_masks
    px, mk = frames([START, OTHER]), masks([START, OTHER])
    obs = enc.encode_slots(Observation(proprio=np.zeros((2, 4)), pixels=px, masks=mk))
    goal = enc.encode_goal_slots(Goal(proprio=np.zeros(4), pixels=px[0], masks=mk[0]))
    torch.testing.assert_close(obs[0], goal)
    torch.testing.assert_close(enc.encode_frames(px, mk[0]), obs)
    assert not torch.allclose(enc.encode_frames(px[:1], mk[1])[0], goal)  # the cue is read
    later = mk.copy()
    later[1] = 0
    torch.testing.assert_close(enc.encode_frames(px, later[0]), obs)  # later frames' masks are not


def test_decoded_frame_is_the_savi_reconstruction():
    enc = tiny_encoder()
    slots = enc.encode_frames(frames([START]))[0]
    img = enc.decode_frame(slots)
    with torch.no_grad():
        recon = enc.model.decode(slots[None])[0][0]  # (3, R, R) in [-1, 1]
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    expect = ((recon.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(img, expect.astype(np.uint8))


@pytest.mark.parametrize("cued", [False, True])
def test_episode_feeds_frames_and_goal_image_at_the_encoders_side(cued):
    """run_episode renders observations and the goal at pixel_size (not at the video size) and the encoder sees
    the goal pose's frame as its goal; a conditional encoder also gets each first frame's instance mask."""
    enc = tiny_encoder(*(["encoder.savi.init=cues"] if cued else []))
    seen, seen_masks = [], []
    real = enc.encode_frames

    def spy(px, first_mask=None):
        seen.append(np.array(px))
        seen_masks.append(first_mask)
        return real(px, first_mask)

    enc.encode_frames = spy
    torch.manual_seed(0)
    from cjepa.models.predictor import build_predictor
    from cjepa.plan.cem import CEM

    wm = SlotWorldModel(build_predictor(tiny_model_config()).eval(), enc, tiny_normalizer(), action_block=5)
    planner = MPCPlanner(wm, CEM(num_samples=8, topk=2, iterations=1, var_scale=1.0, seed=0), horizon=1,
                         receding_horizon=1)
    res = run_episode(PushTEnv(48), planner, START, OTHER, budget=5, pixel_size=32, pixel_masks=enc.needs_masks)
    assert res.plans == 1 and not res.success
    goal_px, obs_px = seen[0], seen[1]  # reset encodes the goal first, then the first observation
    np.testing.assert_array_equal(goal_px[0], frames([OTHER])[0])
    np.testing.assert_array_equal(obs_px[-1], frames([START])[0])
    assert goal_px.shape == (1, 32, 32, 3) and obs_px.shape == (1, 32, 32, 3)
    if cued:
        np.testing.assert_array_equal(seen_masks[0], masks([OTHER])[0])
        np.testing.assert_array_equal(seen_masks[1], masks([START])[0])
    else:
        assert seen_masks == [None, None]


# ------------------------------------------------------------------------------------------ the whole chain


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Tiny Push-T videos (32 px) -> 2-step SAVi -> extracted slots -> 2-step predictor: the plan arguments."""
    tmp = tmp_path_factory.mktemp("pixels")
    runs = tmp / "runs"
    data = ["data.pusht.expert_train=2", "data.pusht.random_train=1", "data.pusht.expert_val=2",
            "data.pusht.render_size=32", "data.pusht.expert_max_steps=60", "data.pusht.random_steps=20",
            f"data.pusht.out={tmp}"]
    enc = ["-c", "configs/pusht/pixels_encoder.yaml", *SAVI, f"run.out_dir={runs}", "run.device=cpu",
           f"encoder.data.path={tmp / 'videos'}", f"encoder.extract.out={tmp / 'savi_slots'}",
           "encoder.data.val_videos=1", "encoder.data.val_clip_frames=3", "data.batch_size=2", "train.max_steps=2",
           "train.val_every=2", "train.ckpt_every=2", "train.precision=fp32"]
    model = ["model.slot_dim=16", "model.heads=2", "model.depth=1", "model.mlp_dim=32"]
    pred = ["-c", "configs/pusht/pixels.yaml", *model, f"run.out_dir={runs}", "run.device=cpu",
            f"data.path={tmp / 'savi_slots'}", "data.batch_size=4", "data.val_batch_size=4", "train.max_steps=2",
            "train.val_every=2", "train.ckpt_every=2", "rollout.eval_videos=0"]
    assert main(["pusht", "-c", "configs/pusht/pixels.yaml", *data]) == 0
    assert main(["train", "--no-progress", *enc]) == 0
    assert main(["extract", "--no-progress", *enc, f"encoder.checkpoint={runs / 'pusht_savi'}"]) == 0
    assert main(["train", "--no-progress", *pred]) == 0
    plan = [*pred, f"plan.dataset={tmp / 'savi_slots'}", f"plan.encoder_checkpoint={runs / 'pusht_savi'}",
            "plan.episodes=2", "plan.seeds=[0]", "plan.num_samples=16", "plan.topk=4", "plan.iterations=2",
            "plan.horizon=2", "plan.receding_horizon=2", "plan.budget=12", "plan.videos=1", "plan.video_size=48",
            "--checkpoint", str(runs / "pusht_pixels_cjepa"), "--no-progress"]
    return tmp, runs, plan


def test_extracted_store_holds_the_episodes_of_the_state_store(chain):
    """The pixel predictor trains on the same proprio, actions and states as the state-slot model."""
    from cjepa.data.slot_store import SlotSplit

    tmp, _, _ = chain
    for split in ("train", "val"):
        pixels, states = SlotSplit(tmp / "savi_slots", split), SlotSplit(tmp / "slots", split)
        assert sorted(pixels) == sorted(states)
        for key in states:
            for extra in ("proprio", "action", "state"):
                np.testing.assert_array_equal(pixels.extra(key, extra), states.extra(key, extra))


def test_plan_from_pixels_end_to_end(chain, capsys):
    tmp, _, plan = chain
    out = tmp / "plan"
    assert main(["plan", *plan, f"plan.out={out}"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["plan"]["encoder"] == "pixels"
    (model,) = res["models"]
    assert len(model["episodes"]["0"]) == 2 and all(e["plans"] >= 1 for e in model["episodes"]["0"])
    assert 0.0 <= model["success_rate_mean"] <= 100.0
    (video,) = list((out / "videos").iterdir())
    first = load_video(video)[0]
    assert first.shape[1] == 3 * 48  # observation | goal | decoded plan end
    identity = json.loads((out / "plan_run.json").read_text())
    assert "encoder" in identity["checkpoints"]  # a retrained encoder makes another evaluation


def test_plan_refuses_an_encoder_that_did_not_make_the_store(chain, tmp_path, capsys):
    """The predictor learned the slots of one encoder: planning through another is a one-line error naming both."""
    tmp, runs, plan = chain
    other = tmp_path / "other"
    ckpt = next((runs / "pusht_savi" / "checkpoints").iterdir())
    other.mkdir()
    for f in ckpt.iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    sd = torch.load(other / "model.pt", weights_only=True)
    sd = {k: v + 1.0 if v.is_floating_point() else v for k, v in sd.items()}
    torch.save(sd, other / "model.pt")
    with pytest.raises(ConfigError, match="did not make the slot store"):
        load_pixel_encoder(str(other), str(tmp / "savi_slots"))
    assert main(["plan", *plan, f"plan.encoder_checkpoint={other}", f"plan.out={tmp_path / 'plan'}"]) == 2
    err = capsys.readouterr().err
    assert "did not make the slot store" in err and err.strip().count("\n") == 0
