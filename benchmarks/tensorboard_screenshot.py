"""A screenshot of tensorboard showing logged videos, taken from the real server by a headless browser.

Starts ``tensorboard --logdir LOGDIR`` on 127.0.0.1 (a free port), waits until it answers, checks that the
images plugin serves the videos under ``--tag`` as animated GIFs, and has headless Chromium load the images
dashboard (every image tag of LOGDIR; or, with ``--dashboard hparams``, the HParams table of a sweep) and save
it as a PNG. Chromium is not a project dependency (Debian: ``apt-get install chromium``). Tensorboard shows
LOGDIR as given, so start it from the folder that holds the runs to keep machine paths out of the picture:

    cjepa demo --out runs/demo
    python benchmarks/tensorboard_screenshot.py --logdir runs/demo/rollout_video --tag rollout_video \\
        --out docs/images/tensorboard_rollout_video.png
    cjepa sweep -c configs/smoke/cpu.yaml masking.num_masked=0,1,2 --cluster debug --name masks run.out_dir=runs
    python benchmarks/tensorboard_screenshot.py --logdir runs/masks --dashboard hparams \\
        --out docs/images/tensorboard_hparams_sweep.png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


@contextlib.contextmanager
def serve(logdir: str, timeout_s: float = 120.0) -> Iterator[str]:
    """A tensorboard server on 127.0.0.1 for ``logdir``; yields its base URL once it lists a run."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1",
                             "--port", str(port), "--reload_interval", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"tensorboard exited with code {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                if json.loads(get(url + "/data/runs")):
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise TimeoutError(f"tensorboard on {url} listed no run within {timeout_s:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def served_videos(url: str, tag_prefix: str) -> dict[tuple[str, str], bytes]:
    """(run, tag) -> the latest image the images plugin serves for it, for every tag starting with ``tag_prefix``."""
    tags = json.loads(get(url + "/data/plugin/images/tags"))
    out = {}
    for run, run_tags in tags.items():
        for tag in run_tags:
            if not tag.startswith(tag_prefix):
                continue
            q = urllib.parse.urlencode({"run": run, "tag": tag})
            series = json.loads(get(f"{url}/data/plugin/images/images?{q}"))
            out[(run, tag)] = get(f"{url}/data/plugin/images/individualImage?{series[-1]['query']}")
    return out


def screenshot(page: str, out: Path, width: int, height: int, wait_ms: int) -> Path:
    """Headless Chromium's screenshot of ``page`` after ``wait_ms`` of (virtual) time to render it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise FileNotFoundError("no Chromium found (Debian: apt-get install chromium): nothing to capture the page")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--virtual-time-budget={wait_ms}",
                    f"--screenshot={out.resolve()}", page], check=True, capture_output=True, timeout=180)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logdir", required=True, help="folder of tensorboard runs (as given, it names them on the page)")
    p.add_argument("--tag", default="rollout_video", help="tag prefix of the videos to show (default rollout_video)")
    p.add_argument("--dashboard", choices=("images", "hparams"), default="images",
                   help="the page to capture: the videos (images) or the sweep's HParams table (hparams)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--size", default="1280x820", help="browser window, WIDTHxHEIGHT (default 1280x820)")
    p.add_argument("--wait-ms", type=int, default=15000, help="time the page gets to load and render (default 15000)")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    with serve(args.logdir) as url:
        if args.dashboard == "images":
            videos = served_videos(url, args.tag)
            if not videos:
                print(f"no tag starting with {args.tag!r} under {args.logdir}", file=sys.stderr)
                return 2
            for (run, tag), data in videos.items():
                kind = "an animated GIF" if data[:6] in (b"GIF87a", b"GIF89a") else "not a GIF"
                print(f"{run} {tag}: {len(data)} bytes, {kind}")
        page = f"{url}/?darkMode=false#{args.dashboard}"
        print(f"screenshot: {screenshot(page, Path(args.out), width, height, args.wait_ms)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
