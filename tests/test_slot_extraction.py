"""Slot extraction into the slot store (cjepa/slot_extraction.py)."""

import pickle

import numpy as np
import pytest
import torch

from cjepa.config import load_config
from cjepa.data.clips import InMemoryVideos
from cjepa.data.slot_store import SlotSplit, SlotStoreError
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.slot_extraction import extract, extract_split, video_seed
from tests.video_helpers import TINY_SAVI, disc_videos

# TINY_SAVI with one slot more than the disc videos have objects
SMALL = [o for o in TINY_SAVI if not o.startswith("encoder.num_slots=")] + ["encoder.num_slots=4"]
DEV = torch.device("cpu")


def _setup(*extra):
    cfg = load_config([], SMALL + list(extra))
    torch.manual_seed(0)
    model = build_object_encoder(cfg.encoder).eval()
    return cfg, model


def _videos(n=4, T=9, **kw):
    vids = disc_videos(n, T, 16, seed=3, **kw)
    for v in vids.values():  # a Push-T-like per-frame extra to pass through
        v["meta"]["proprio"] = np.arange(T * 4, dtype=np.float32).reshape(T, 4)
    return vids


def _read(root, split="train"):
    s = SlotSplit(root, split)
    return {k: (np.array(s[k]), {e: np.array(s.extra(k, e)) for e in s.extras}) for k in s}


def test_extraction_is_deterministic_and_matches_the_encoder(tmp_path):
    """Two extractions give identical stores; each video's slots equal encode() with that video's own seed."""
    cfg, model = _setup()
    src = InMemoryVideos(_videos())
    for name in ("a", "b"):
        summary = extract(model, {"train": src}, tmp_path / name, enc_cfg=cfg.encoder, device=DEV, progress=False)
    a, b = _read(tmp_path / "a"), _read(tmp_path / "b")
    assert sorted(a) == src.keys()
    for k in a:
        assert np.array_equal(a[k][0], b[k][0]) and a[k][1].keys() == b[k][1].keys()
    item = next(src.iter_videos())
    g = torch.Generator().manual_seed(video_seed(cfg.encoder.extract.seed, item.key))
    with torch.no_grad():
        ref = model.encode(item.frames[None], generator=[g], masks=False).slots[0].numpy()
    assert np.allclose(a[item.key][0], ref, atol=1e-6)
    assert summary[0]["written"] == 4 and "fg_ari" in summary[0]


def test_resume_equals_an_uninterrupted_run(tmp_path):
    """Extracting part of a split, then the whole, skips the done videos and ends with the uninterrupted result."""
    cfg, model = _setup()
    vids = _videos(n=5)
    full = InMemoryVideos(vids)
    part = InMemoryVideos({k: vids[k] for k in sorted(vids)[:2]})
    extract_split(model, part, tmp_path / "r", "train", enc_cfg=cfg.encoder, device=DEV, progress=False)
    s = extract_split(model, full, tmp_path / "r", "train", enc_cfg=cfg.encoder, device=DEV, progress=False)
    assert s["skipped_existing"] == 2 and s["written"] == 3
    extract_split(model, full, tmp_path / "u", "train", enc_cfg=cfg.encoder, device=DEV, progress=False)
    r, u = _read(tmp_path / "r"), _read(tmp_path / "u")
    assert sorted(r) == sorted(u)
    for k in u:
        assert np.array_equal(r[k][0], u[k][0])
        assert all(np.array_equal(r[k][1][e], u[k][1][e]) for e in u[k][1])


def test_batching_videos_does_not_change_slots(tmp_path):
    """batch_videos=3 gives the same slots as one video at a time (per-video noise)."""
    cfg1, model = _setup()
    cfg3, _ = _setup("encoder.extract.batch_videos=3")
    src = InMemoryVideos(_videos(n=4))
    extract_split(model, src, tmp_path / "one", "train", enc_cfg=cfg1.encoder, device=DEV, progress=False)
    extract_split(model, src, tmp_path / "three", "train", enc_cfg=cfg3.encoder, device=DEV, progress=False)
    one, three = _read(tmp_path / "one"), _read(tmp_path / "three")
    for k in one:
        assert np.allclose(one[k][0], three[k][0], atol=1e-5), k


def test_shard_actions_between_frames_become_one_row_per_frame(tmp_path):
    """A Push-T shard's json holds T-1 actions (action t moves frame t to t+1): the store gets them with a NaN last
    row, the state-slot store's layout, so a predictor reads both stores alike; any other count is refused."""
    cfg, model = _setup()
    vids = _videos(n=1, T=5)
    (v,) = vids.values()
    v["meta"]["action"] = np.arange(8, dtype=np.float32).reshape(4, 2)
    extract_split(model, InMemoryVideos(vids), tmp_path / "s", "val", enc_cfg=cfg.encoder, device=DEV, progress=False)
    ((_, extras),) = _read(tmp_path / "s", "val").values()
    np.testing.assert_array_equal(extras["action"][:4], v["meta"]["action"])
    assert extras["action"].shape == (5, 2) and np.isnan(extras["action"][4]).all()
    v["meta"]["action"] = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="'action' has 3 rows, the video has 5 frames"):
        extract_split(model, InMemoryVideos(vids), tmp_path / "t", "val", enc_cfg=cfg.encoder, device=DEV,
                      progress=False)


def test_extras_object_ids_and_stride(tmp_path):
    """Stride 2 keeps every 2nd frame; proprio/state pass through strided; object_ids (T, S) hold GT ids or -1."""
    cfg, model = _setup("encoder.extract.frame_stride=2")
    vids = _videos(n=2, T=9)
    extract_split(model, InMemoryVideos(vids), tmp_path / "s", "val", enc_cfg=cfg.encoder, device=DEV, progress=False)
    out = _read(tmp_path / "s", "val")
    for k, (slots, extras) in out.items():
        assert slots.shape == (5, 4, 16)
        assert set(extras) == {"object_ids", "proprio", "state"}
        assert np.array_equal(extras["proprio"], vids[k]["meta"]["proprio"][::2])
        ids = extras["object_ids"]
        assert ids.shape == (5, 4)
        present = set(np.unique(vids[k]["masks"]).tolist()) - {0}
        assert set(np.unique(ids).tolist()) <= present | {-1}
        for t in range(5):  # a slot holds at most one object, and an object is in at most one slot
            visible = set(np.unique(vids[k]["masks"][2 * t]).tolist()) - {0}
            held = [i for i in ids[t].tolist() if i >= 0]
            assert len(held) == len(set(held)) and set(held) <= visible


def test_a_store_from_another_encoder_is_refused(tmp_path):
    """Resuming into a store produced with a different encoder config is an error, not a silent mix."""
    cfg, model = _setup()
    src = InMemoryVideos(_videos(n=2))
    extract(model, {"train": src}, tmp_path / "x", enc_cfg=cfg.encoder, device=DEV, progress=False)
    cfg2, _ = _setup("encoder.extract.seed=5")
    with pytest.raises(SlotStoreError, match="different encoder"):
        extract(model, {"train": src}, tmp_path / "x", enc_cfg=cfg2.encoder, device=DEV, progress=False)


def test_pickle_export_matches_the_store(tmp_path):
    """encoder.extract.export_pickle writes the original {split: {video: (T, S, D)}} layout."""
    cfg, model = _setup(f"encoder.extract.export_pickle={tmp_path / 'slots.pkl'}")
    srcs = {"train": InMemoryVideos(_videos(n=2)), "val": InMemoryVideos(_videos(n=1))}
    extract(model, srcs, tmp_path / "st", enc_cfg=cfg.encoder, device=DEV, progress=False)
    with open(tmp_path / "slots.pkl", "rb") as fh:
        data = pickle.load(fh)
    assert sorted(data) == ["train", "val"]
    store = _read(tmp_path / "st")
    for k, arr in data["train"].items():
        assert arr.dtype == np.float32 and np.array_equal(arr, store[k][0])


def test_conditional_encoder_extracts_from_first_frame_cues(tmp_path):
    """encoder.savi.init=cues: each video starts from its own first-frame mask cues (as encode() with them);
    a source without instance masks is refused with the reason."""
    from cjepa.models.object_encoder import first_frame_cues

    cfg, model = _setup("encoder.savi.init=cues")
    vids = _videos()
    extract(model, {"train": InMemoryVideos(vids)}, tmp_path / "c", enc_cfg=cfg.encoder, device=DEV, progress=False)
    key = sorted(vids)[0]
    item = next(v for v in InMemoryVideos(vids).iter_videos() if v.key == key)
    g = torch.Generator().manual_seed(video_seed(cfg.encoder.extract.seed, key))
    with torch.no_grad():
        cues = first_frame_cues(item.masks[:1].long(), 4)
        ref = model.encode(item.frames[None], generator=[g], masks=False, cues=cues).slots[0].numpy()
    assert np.allclose(_read(tmp_path / "c")[key][0], ref, atol=1e-6)
    bare = InMemoryVideos({k: {"frames": v["frames"]} for k, v in vids.items()})
    with pytest.raises(ValueError, match="needs instance masks"):
        extract(model, {"train": bare}, tmp_path / "d", enc_cfg=cfg.encoder, device=DEV, progress=False)
