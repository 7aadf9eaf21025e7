"""Test scaffolding: render the built-in billiards world into small RGB videos with exact instance masks.

Discs (cjepa.data.synthetic.simulate_billiards) are drawn as flat-coloured circles on a plain background,
later objects on top; the instance mask holds 1 + the object's index where it is visible, 0 elsewhere. This is
a cheap stand-in for the real world renderer, only for tests of the encoders, extraction and metrics.
"""

from __future__ import annotations

import numpy as np

from cjepa.data.synthetic import simulate_billiards

COLOURS = np.array(
    [
        [230, 60, 60],
        [60, 200, 80],
        [70, 110, 240],
        [240, 200, 40],
        [200, 80, 220],
        [40, 210, 220],
        [250, 140, 40],
        [240, 240, 240],
    ],
    dtype=np.uint8,
)
BACKGROUND = np.array([40, 40, 48], dtype=np.uint8)


def render_discs(positions: np.ndarray, radii: np.ndarray, colours: np.ndarray,
                 size: int) -> tuple[np.ndarray, np.ndarray]:
    """positions (T, N, 2) in the unit square, radii (N,), colour indices (N,) -> uint8 (T, H, W, 3), int16 masks (T,
    H, W)."""
    T, N, _ = positions.shape
    c = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(c, c, indexing="ij")  # pixel centres
    frames = np.broadcast_to(BACKGROUND, (T, size, size, 3)).copy()
    masks = np.zeros((T, size, size), dtype=np.int16)
    for n in range(N):
        d2 = (xx[None] - positions[:, n, 0, None, None]) ** 2 + (yy[None] - positions[:, n, 1, None, None]) ** 2
        inside = d2 < radii[n] ** 2  # (T, H, W)
        frames[inside] = COLOURS[colours[n] % len(COLOURS)]
        masks[inside] = n + 1
    return frames, masks


def disc_videos(
    num_videos: int,
    num_frames: int,
    size: int,
    *,
    seed: int = 0,
    min_objects: int = 2,
    max_objects: int = 3,
    radius_scale: float = 2.0,
) -> dict:
    """``{key: {"frames", "masks", "meta"}}`` of rendered billiards videos (radii scaled up to be visible at low
    res)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(num_videos):
        n = int(rng.integers(min_objects, max_objects + 1))
        v = simulate_billiards(n, num_frames, rng)
        colours = rng.permutation(len(COLOURS))[:n]
        frames, masks = render_discs(v.positions, np.minimum(v.radii * radius_scale, 0.2), colours, size)
        state = np.zeros((num_frames, 2 * max_objects), np.float32)  # fixed width: positions, zero-padded
        state[:, : 2 * n] = v.positions.reshape(num_frames, -1)
        out[f"video_{i:04d}"] = {"frames": frames, "masks": masks, "meta": {"state": state}}
    return out


# The smallest encoders the tests build and train (dotted overrides): SAVi at 16 px with 3 slots x 16 and
# 8-channel CNNs; VideoSAUR on a one-block, 32-wide ViT at 28 px (random weights).
TINY_SAVI = [
    "encoder.kind=savi",
    "encoder.savi.resolution=16",
    "encoder.savi.dec_resolution=4",
    "encoder.savi.enc_channels=8",
    "encoder.savi.dec_channels=8",
    "encoder.slot_dim=16",
    "encoder.num_slots=3",
    "encoder.savi.slot_mlp=16",
]
TINY_VIDEOSAUR = [
    "encoder.backbone.dim=32",
    "encoder.backbone.depth=1",
    "encoder.backbone.heads=2",
    "encoder.backbone.pos_grid=4",
    "encoder.backbone.image_size=28",
    "encoder.slot_dim=16",
    "encoder.num_slots=3",
    "encoder.videosaur.mlp_hidden=16",
    "encoder.videosaur.predictor_ffn=16",
    "encoder.videosaur.decoder_ffn=16",
    "encoder.videosaur.renderer_dims=[16]",
]


def take_batches(loader, n: int) -> list[tuple[list[str], list]]:
    """The (keys, frame indices) of the next ``n`` batches of a clip loader, across its passes (a resume test's
    record of the stream)."""
    out = []
    while len(out) < n:
        for b in loader:
            out.append((b["keys"], b["frame_index"].tolist()))
            if len(out) == n:
                break
    return out
