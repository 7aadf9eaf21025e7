"""Decoded rollouts (cjepa/eval/rollout_video.py): metrics on fixed tensors, decoding, the comparison video and its
tensorboard / mp4 outputs."""

import json

import numpy as np
import pytest
import torch

from cjepa.config import load_config
from cjepa.data.clips import InMemoryVideos
from cjepa.eval.rollout_video import (
    Decoded,
    comparison_video,
    decode_slots,
    decoded_rollouts,
    matched_miou,
    psnr,
    ssim,
    step_metrics,
    summary_line,
    trained_step,
)
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.models.predictor import build_predictor
from tests.tensorboard_helpers import event_videos
from tests.video_helpers import TINY_SAVI, TINY_VIDEOSAUR, disc_videos


def test_psnr_of_a_known_mse():
    """A uniform error of 0.1 on [0, 1] images is an MSE of 0.01: 20 dB; on a 0..255 scale the same error is 40 dB."""
    gt = torch.rand(2, 3, 8, 8) * 0.8
    assert torch.allclose(psnr(gt + 0.1, gt), torch.full((2,), 20.0, dtype=torch.float64))
    assert torch.allclose(psnr((gt + 0.1) * 255, gt * 255, max_val=255.0), torch.full((2,), 20.0, dtype=torch.float64))
    assert torch.isinf(psnr(gt, gt)).all()


def test_ssim_of_identical_and_constant_images():
    """Identical images score 1; two constant images score (2ab + C1) / (a^2 + b^2 + C1) (no structure term)."""
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    a, b, c1 = 0.2, 0.7, 0.01**2
    got = ssim(torch.full((1, 1, 16, 16), a, dtype=torch.float64), torch.full((1, 1, 16, 16), b, dtype=torch.float64))
    assert got.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)


def test_ssim_matches_a_gaussian_filter_reference():
    """Against SSIM written with scipy's Gaussian filter (sigma 1.5, 11 taps), borders cropped as skimage does."""
    from scipy.ndimage import gaussian_filter

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 24, 24, generator=g)
    y = (x + 0.3 * torch.rand(1, 1, 24, 24, generator=g)).clamp(0, 1)
    a, b = x[0, 0].double().numpy(), y[0, 0].double().numpy()

    def blur(t):
        return gaussian_filter(t, sigma=1.5, truncate=3.5)[5:-5, 5:-5]  # 11-tap window, valid positions only

    mx, my = blur(a), blur(b)
    vx, vy, cxy = blur(a * a) - mx**2, blur(b * b) - my**2, blur(a * b) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ref = (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()
    assert ssim(x, y).item() == pytest.approx(float(ref), rel=1e-9)


def _hand_masks():
    """One 4x4 frame: object 1 the top-left 2x2, object 2 the bottom row; slots: 2 = object 1 exactly,
    0 = the left half of the bottom row plus the right half of the top row, 1 = the rest."""
    gt = torch.zeros(1, 4, 4, dtype=torch.long)
    gt[0, :2, :2] = 1
    gt[0, 3, :] = 2
    pred = torch.ones(1, 4, 4, dtype=torch.long)
    pred[0, :2, :2] = 2
    pred[0, 3, :2] = 0
    pred[0, 0, 2:] = 0
    return gt, pred


def test_miou_matches_objects_to_slots_by_hand():
    """Object 1 <-> slot 2 (IoU 1); object 2 <-> slot 0 (IoU 2/6) beats slot 1 (2/10): mIoU = (1 + 1/3) / 2."""
    gt, pred = _hand_masks()
    assert matched_miou(gt, pred, 3).item() == pytest.approx((1 + 1 / 3) / 2)
    assert torch.isnan(matched_miou(torch.zeros_like(gt), pred, 3)).all()  # no object: no score


def test_miou_and_fg_ari_are_invariant_to_slot_permutation():
    """Renaming the slots changes neither mIoU nor FG-ARI; perfect masks score 1 on both."""
    gt, pred = _hand_masks()
    perm = torch.tensor([1, 2, 0])
    assert matched_miou(gt, perm[pred], 3).item() == pytest.approx(matched_miou(gt, pred, 3).item())
    perfect = torch.nn.functional.one_hot(gt, 3).permute(0, 3, 1, 2).float()[:, torch.tensor([2, 0, 1])]  # (1, S, H, W)
    m = step_metrics(torch.zeros(1, 1, 3, 4, 4), gt[None], Decoded(perfect[None]))
    assert m["miou"].item() == pytest.approx(1.0) and m["fg_ari"].item() == pytest.approx(1.0)
    assert "psnr" not in m  # masks only: nothing to compare pixels with


def _tiny(extra=()):
    torch.manual_seed(0)
    cfg = load_config([], [*TINY_SAVI, *extra])
    return cfg, build_object_encoder(cfg.encoder).eval()


def test_decode_slots_gives_frames_and_masks():
    """SAVi: RGB in [0, 1] at its resolution and masks summing to 1 over slots; VideoSAUR: masks on its patch grid."""
    cfg, enc = _tiny()
    d = decode_slots(enc, torch.randn(5, 3, 16))
    assert d.frames.shape == (5, 3, 16, 16) and d.masks.shape == (5, 3, 16, 16)
    assert 0 <= d.frames.min() and d.frames.max() <= 1 and torch.allclose(d.masks.sum(1), torch.ones(5, 16, 16),
                                                                          atol=1e-5)
    torch.manual_seed(0)
    vcfg = load_config([], ["encoder.kind=videosaur", *TINY_VIDEOSAUR])
    v = decode_slots(build_object_encoder(vcfg.encoder).eval(), torch.randn(4, 3, 16))
    assert v.frames is None and v.masks.shape[:2] == (4,
                                                      3) and torch.allclose(v.masks.sum(1),
                                                                            torch.ones(v.masks.shape[-2:]), atol=1e-5)


def test_comparison_video_panels_are_gt_reconstruction_prediction():
    """Top row: ground truth | reconstruction | prediction frames, each from its own source."""
    T, H = 3, 8
    masks = torch.softmax(torch.randn(T, 2, H, H), dim=1)
    video = comparison_video(torch.zeros(T, 3, H, H), None, Decoded(masks, torch.full((T, 3, H, H), 0.5)),
                             Decoded(masks, torch.ones(T, 3, H, H)), scale=2)
    label = video.shape[1] - 2 * 2 * H
    assert video.shape == (T, label + 4 * H, 3 * 2 * H, 3)
    top = video[:, label : label + 2 * H]
    assert (top[:, :,
                : 2 * H] == 0).all() and (top[:, :, 2 * H : 4 * H] == 128).all() and (top[:, :, 4 * H :] == 255).all()


def test_trained_step_of_a_run_a_checkpoint_and_a_bare_state_dict(tmp_path):
    """Clips are logged at the step the predictor was trained to: a checkpoint's meta.json, a run directory's
    latest checkpoint; a bare state_dict file records no step (0)."""
    for step in (5, 40):
        ckpt = tmp_path / "run" / "checkpoints" / f"step_{step:07d}"
        ckpt.mkdir(parents=True)
        (ckpt / "model.pt").write_bytes(b"")
        (ckpt / "meta.json").write_text(json.dumps({"step": step}))
    (tmp_path / "weights.pt").write_bytes(b"")
    assert trained_step(tmp_path / "run") == 40 and trained_step(tmp_path / "run" / "checkpoints" / "step_0000005") == 5
    assert trained_step(tmp_path / "weights.pt") == 0


def test_decoded_rollouts_end_to_end(tmp_path):
    """Tiny SAVi + tiny predictor on rendered disc videos: per-step metrics for predictor, copy-last and
    reconstruction; an mp4 per clip with one frame per rollout step at the expected size; the same clip as a
    tensorboard video at the trained step, replaced (one event file, one clip) when decoding again."""
    import av

    cfg, enc = _tiny(["model.num_slots=3", "model.slot_dim=16", "model.history_frames=2", "model.pred_frames=2",
                      "model.depth=1", "model.mlp_dim=16", "model.heads=2",
                      "data.synthetic.max_objects=3"])
    pred = build_predictor(cfg.model).eval()
    source = InMemoryVideos(disc_videos(3, 12, 16, seed=1))
    slots = {item.key: enc.encode(item.frames[None]).slots[0].detach().numpy() for item in source.iter_videos()}
    kw = dict(history=2, pred_frames=2, chains=2, frameskip=2, frame_stride=1, out_dir=tmp_path / "clips",
              tb_dir=tmp_path / "tb", max_clips=1)
    decoded_rollouts(enc, pred, slots, source, max_videos=1, step=3, **kw)
    res = decoded_rollouts(enc, pred, slots, source, max_videos=3, step=12, **kw)
    assert res["steps"] == 4 and res["videos"] == 3
    for name in ("predictor", "copy_last", "reconstruction"):
        assert set(res[name]) == {"psnr", "ssim", "fg_ari", "miou"} and all(len(v) == 4 for v in res[name].values())
    assert res["predictor"] != res["copy_last"]
    assert "decoded rollouts (3 videos x 4 steps; predictor | copy-last | reconstruction): PSNR " in summary_line(res)
    (clip,) = res["clips"]
    with av.open(clip) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (8 + 2 * 4 * 16, 3 * 4 * 16, 3)  # label strip + 2 rows, 3 panels
    ((step, video),) = event_videos(tmp_path / "tb", res["tb"][0])  # the rerun's clip alone
    assert res["tb"] == [f"rollout_video/{next(iter(slots))}"] and len(list((tmp_path / "tb").iterdir())) == 1
    assert step == 12 and video.shape == (4, *frames[0].shape)
    assert np.abs(video.astype(int) - np.stack(frames).astype(int)).mean() < 12  # GIF palette vs H.264 losses
