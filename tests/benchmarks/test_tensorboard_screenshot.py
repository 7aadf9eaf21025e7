"""The tensorboard screenshot script (benchmarks/tensorboard_screenshot.py): a real tensorboard server serves our
video summaries as the GIFs we wrote; with Chromium installed, its images dashboard is captured as a PNG."""

import shutil

import numpy as np
import pytest

from benchmarks.tensorboard_screenshot import screenshot, serve, served_videos
from cjepa.utils.tensorboard import add_video, gif_bytes


def _video() -> np.ndarray:
    video = np.zeros((4, 8, 16, 3), np.uint8)
    for t in range(4):
        video[t, :, 4 * t : 4 * t + 4] = 255
    return video


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One tensorboard (its start takes seconds) for a run ``tb`` with one video and one scalar."""
    from torch.utils.tensorboard import SummaryWriter

    logdir = tmp_path_factory.mktemp("runs")
    with SummaryWriter(str(logdir / "tb")) as w:
        add_video(w, "rollout_video/v0", _video(), 3)
        w.add_scalar("loss", 1.0, 3)
    with serve(str(logdir)) as url:
        yield url


def test_tensorboard_serves_the_video_as_the_gif_we_wrote(server):
    assert served_videos(server, "rollout_video") == {("tb", "rollout_video/v0"): gif_bytes(_video())}
    assert served_videos(server, "other") == {}


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install chromium)")
def test_screenshot_of_the_images_dashboard(server, tmp_path):
    from PIL import Image

    out = screenshot(f"{server}/?darkMode=false#images", tmp_path / "shot.png", 640, 400, 5000)
    with Image.open(out) as im:
        assert im.size == (640, 400) and len(im.convert("RGB").getcolors(1 << 16) or []) > 8  # a page, not a blank


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install chromium)")
def test_main_captures_the_hparams_dashboard_of_a_sweep(tmp_path):
    """--dashboard hparams needs no image tags: a folder of HParams sessions is served and captured."""
    from PIL import Image

    from benchmarks.tensorboard_screenshot import main
    from cjepa.utils.tensorboard import write_hparams

    for m in (0, 1):
        write_hparams(tmp_path / "runs" / f"00{m}" / "tb" / "hparams", {"masking.num_masked": m},
                      {"final/loss": 1.0 - m})
    out = tmp_path / "hp.png"
    assert main(["--logdir", str(tmp_path / "runs"), "--dashboard", "hparams", "--out", str(out), "--size",
                 "640x400"]) == 0
    with Image.open(out) as im:
        assert im.size == (640, 400)
