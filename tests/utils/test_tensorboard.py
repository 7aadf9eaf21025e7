"""Video and hparams summaries (cjepa/utils/tensorboard.py), read back with tensorboard's own event readers."""

import numpy as np
import pytest

from cjepa.utils.tensorboard import add_video, fresh_log_dir, gif_bytes, hparam_value, write_hparams
from tests.tensorboard_helpers import event_videos, hparams_session


def ramp_video(T: int = 5, H: int = 6, W: int = 8) -> np.ndarray:
    """Frames that differ from each other (a GIF merges identical neighbours into one longer frame)."""
    v = np.zeros((T, H, W, 3), np.uint8)
    for t in range(T):
        v[t, :, : W // 2] = (40 * t, 0, 255 - 40 * t)
        v[t, :, W // 2 :] = (0, 30 * t, 90)
    return v


def test_add_video_is_a_gif_in_the_event_file_with_every_frame(tmp_path):
    """The clip is an image summary under its tag at its step; its GIF decodes back to the frames, in order."""
    from torch.utils.tensorboard import SummaryWriter

    video = ramp_video()
    with SummaryWriter(str(tmp_path)) as w:
        add_video(w, "clips/a", video, step=17, fps=5)
    ((step, frames),) = event_videos(tmp_path, "clips/a")
    assert step == 17 and frames.shape == video.shape
    assert np.abs(frames.astype(int) - video.astype(int)).max() <= 8  # GIF palette: a few levels at most


def test_gif_bytes_refuses_what_is_not_a_uint8_rgb_clip():
    with pytest.raises(ValueError, match=r"uint8 \(T, H, W, 3\)"):
        gif_bytes(np.zeros((3, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"uint8 \(T, H, W, 3\)"):
        gif_bytes(np.zeros((0, 4, 4, 3), np.uint8))


def test_gif_plays_at_the_given_rate_and_loops():
    from io import BytesIO

    from PIL import Image

    gif = Image.open(BytesIO(gif_bytes(ramp_video(), fps=4)))
    assert gif.n_frames == 5 and gif.info["duration"] == 250 and gif.info["loop"] == 0


def test_write_hparams_is_one_session_however_often_it_is_written(tmp_path):
    """The hparams plugin's records name the hparams and metrics; writing again replaces the session (one event
    file) with the new values; NaN metrics are left out."""
    d = tmp_path / "hp"
    first = {"masking.num_masked": 2, "run.seed": 1, "opt": "adam"}
    write_hparams(d, first, {"final/loss": 0.5, "final/x": float("nan")}, 9)
    write_hparams(d, {"masking.num_masked": 3, "run.seed": 1, "opt": "adam"}, {"final/loss": 0.25}, 10)
    assert len(list(d.glob("events.out.tfevents.*"))) == 1
    hparams, values, names = hparams_session(d)
    assert hparams == {"masking.num_masked": 3.0, "run.seed": 1.0, "opt": "adam"}
    assert names == ["final/loss"] and values == {"final/loss": 0.25}


def test_write_hparams_refuses_values_the_dashboard_cannot_show(tmp_path):
    with pytest.raises(TypeError, match="bool, int, float or str"):
        write_hparams(tmp_path, {"model.dims": [1, 2]}, {"m": 1.0})


def test_hparam_value_parses_override_text():
    assert hparam_value("3") == 3 and hparam_value("1e-3") == 0.001 and hparam_value("true") is True
    assert hparam_value("[1, 2]") == "[1, 2]" and hparam_value("adam") == "adam"


def test_fresh_log_dir_removes_only_event_files(tmp_path):
    (tmp_path / "events.out.tfevents.1.host").write_text("x")
    (tmp_path / "clip.mp4").write_text("y")
    fresh_log_dir(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
