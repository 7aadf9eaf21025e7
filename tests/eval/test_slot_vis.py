"""Slot-mask pictures (cjepa/eval/slot_vis.py)."""

import torch
from PIL import Image

from cjepa.eval.slot_vis import (
    frames_to_unit,
    log_slot_images,
    log_slot_video,
    overlay,
    palette,
    save_gif,
    slot_grid,
    slot_video,
)
from tests.tensorboard_helpers import event_videos


def _clip(T=5, S=3, size=12):
    torch.manual_seed(0)
    return torch.randn(T, 3, size, size), torch.softmax(torch.randn(T, S, 4, 4), dim=1)


def test_overlay_colours_pixels_by_argmax_slot():
    """On a black frame with alpha 1 each pixel takes its argmax slot's palette colour."""
    masks = torch.zeros(1, 2, 2, 2)
    masks[0, 1, :, 1] = 1.0  # slot 1 on the right column
    out = overlay(torch.zeros(1, 3, 2, 2), masks, alpha=1.0)
    assert torch.allclose(out[0, :, 0, 0], palette(2)[0]) and torch.allclose(out[0, :, 0, 1], palette(2)[1])


def test_slot_grid_layout():
    """Grid rows = frame, overlay, one per slot; columns = up to max_frames frames; values in [0, 1]."""
    frames, masks = _clip()
    g = slot_grid(frames, masks, max_frames=4)
    assert g.shape == (3, (3 + 2) * 12, 4 * 12)
    assert g.min() >= 0 and g.max() <= 1
    assert torch.allclose(g[:, :12, :12], frames_to_unit(frames[:1])[0])


def test_gif_has_one_frame_per_time_step(tmp_path):
    """save_gif writes an animated GIF (frame | overlay) with T frames, readable by PIL."""
    frames, masks = _clip(T=4)
    p = save_gif(tmp_path / "a" / "slots.gif", frames, masks, scale=2)
    with Image.open(p) as im:
        assert im.n_frames == 4 and im.size == (2 * 12 * 2, 12 * 2)


def test_tensorboard_images_are_written(tmp_path):
    """log_slot_images adds one image per video to a SummaryWriter."""
    from torch.utils.tensorboard import SummaryWriter

    frames, masks = _clip()
    w = SummaryWriter(str(tmp_path))
    log_slot_images(w, "val/slots", frames[None].repeat(3, 1, 1, 1, 1), masks[None].repeat(3, 1, 1, 1, 1), 7,
                    max_videos=2)
    w.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert sorted(acc.Tags()["images"]) == ["val/slots/video0", "val/slots/video1"]


def test_slot_video_is_each_frame_beside_its_overlay():
    """slot_video: uint8 (T, scale H, 2 scale W, 3), the frame on the left, its argmax-slot overlay on the right."""
    frames, masks = _clip(T=4)
    v = slot_video(frames, masks, scale=2)
    assert v.shape == (4, 24, 48, 3) and v.dtype.name == "uint8"
    unit = frames_to_unit(frames)
    left = torch.from_numpy(v[:, ::2, :24:2]).permute(0, 3, 1, 2).float() / 255
    right = torch.from_numpy(v[:, ::2, 24::2]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(left, unit, atol=1 / 255) and torch.allclose(right, overlay(unit, masks), atol=1 / 255)


def test_slot_masks_over_time_are_a_tensorboard_video(tmp_path):
    """log_slot_video: one video under the tag at the step, one GIF frame per time step."""
    from torch.utils.tensorboard import SummaryWriter

    frames, masks = _clip(T=5)
    with SummaryWriter(str(tmp_path)) as w:
        log_slot_video(w, "val/slot_video", frames, masks, 11, scale=1)
    ((step, video),) = event_videos(tmp_path, "val/slot_video")
    assert step == 11 and video.shape == (5, 12, 24, 3)
