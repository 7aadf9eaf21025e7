"""cjepa.data.clevrer: real CLEVRER, in its published directory layout, into the same shards as the world.

The fixture writes a small directory exactly as CLEVRER's zips unpack (video_train/video_00000-01000/..., annotation_*,
questions/*.json, derender_proposals/sim_*.json with COCO RLE masks), using world videos so masks are known.
"""

import json

import numpy as np
import pytest

from cjepa.cli import main
from cjepa.data.clevrer import ClevrerLayoutError, convert_clevrer, find_videos, rle_decode, rle_encode
from cjepa.data.loader import VideoClipLoader, iter_videos
from cjepa.data.shards import open_split
from cjepa.data.video import encode_video
from cjepa.data.world.generate import generate_video
from tests.data.conftest import tiny_world
from tests.data.test_loader import raw_sample


def proposals(video) -> dict:
    """NS-DR style derender proposals: per frame, per visible object, an RLE mask with the object's attributes."""
    props = {o["object_id"]: o for o in video.meta["object_property"]}
    frames = []
    for t, ids in enumerate(video.masks):
        objs = [{"mask": rle_encode(ids == oid + 1), "score": 0.99,
                 **{k: props[oid][k] for k in ("color", "material", "shape")}}
                for oid in sorted(props) if (ids == oid + 1).any()]
        frames.append({"frame_filename": f"{t:05d}.png", "frame_index": t, "objects": objs})
    return {"video_name": video.key, "frames": frames}


@pytest.fixture(scope="module")
def clevrer_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clevrer")
    cfg = tiny_world()
    videos = {}
    for split, clevrer_split, indices in (("train", "train", (0, 1)), ("val", "validation", (10000,))):
        entries = []
        for index in indices:
            v = generate_video(cfg, split, index)
            videos[index] = v
            group = f"{index // 1000 * 1000:05d}-{index // 1000 * 1000 + 1000:05d}"
            vdir = root / f"video_{clevrer_split}" / f"video_{group}"
            adir = root / f"annotation_{clevrer_split}" / f"annotation_{group}"
            vdir.mkdir(parents=True, exist_ok=True)
            adir.mkdir(parents=True, exist_ok=True)
            (vdir / f"video_{index:05d}.mp4").write_bytes(encode_video(v.frames, fps=25))
            ann = {k: v.meta[k] for k in ("object_property", "motion_trajectory", "collision")}
            (adir / f"annotation_{index:05d}.json").write_text(json.dumps({"scene_index": index,
                                                                           "video_filename": f"video_{index:05d}.mp4",
                                                                           **ann}))
            entries.append({**v.questions, "scene_index": index, "video_filename": f"video_{index:05d}.mp4"})
            (root / "derender_proposals").mkdir(exist_ok=True)
            (root / "derender_proposals" / f"sim_{index:05d}.json").write_text(json.dumps(proposals(v)))
        (root / "questions").mkdir(exist_ok=True)
        (root / "questions" / f"{clevrer_split}.json").write_text(json.dumps(entries))
    (root / "video_train" / "video_00000-01000" / "video_00002.mp4").write_bytes(b"corrupt download")
    return root, videos


def test_rle_matches_coco():
    """Our COCO RLE codec reproduces pycocotools' string for a known mask (column-major runs, zeros first)."""
    m = np.array([[1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 1]], np.uint8)
    assert rle_encode(m) == {"size": [4, 6], "counts": "0181J0002O"}
    np.testing.assert_array_equal(rle_decode("0181J0002O", [4, 6]), m)
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = (rng.random((9, 13)) > rng.random()).astype(np.uint8)
        np.testing.assert_array_equal(rle_decode(rle_encode(r)["counts"], [9, 13]), r)


def test_clevrer_layout_converts_and_reads_like_the_world(clevrer_root, tmp_path, caplog):
    """`cjepa data clevrer` writes train/val shards; videos pass through unchanged, annotations become meta, the
    question entries ride along, proposal masks come back as instance ids equal to the objects' pixels; a corrupt video
    is skipped and counted."""
    root, videos = clevrer_root
    out = tmp_path / "shards"
    assert main(["data", "clevrer", "--root", str(root), "--out", str(out), "--splits", "train", "val", "--shard-size",
                 "1", "--no-progress"]) == 0
    train, val = open_split(out, "train"), open_split(out, "val")
    assert train.manifest["source"] == "clevrer" and train.num_samples == 2 and val.num_samples == 1
    assert train.manifest["num_with_masks"] == 2 and train.manifest["num_with_questions"] == 2
    # DALI reads it natively
    assert train.manifest["num_with_video_info"] == 2 and val.manifest["num_with_video_info"] == 1
    got = {k: (f, m, meta) for k, f, m, meta in iter_videos(out / "train", image_size=None)}
    got.update({k: (f, m, meta) for k, f, m, meta in iter_videos(out / "val", image_size=None)})
    assert sorted(got) == ["video_00000", "video_00001", "video_10000"]
    for key, (frames, masks, meta) in got.items():
        index = int(key.split("_")[1])
        v = videos[index]
        split_dir = out / ("val" if index >= 10000 else "train")
        raw = raw_sample(split_dir, key)
        clevrer_split = "validation" if index >= 10000 else "train"
        src = next(p for p in root.rglob(f"video_{clevrer_split}/*/{key}.mp4"))
        assert raw["mp4"] == src.read_bytes()  # no re-encoding
        np.testing.assert_array_equal(masks.numpy(), v.masks)
        assert meta["scene_index"] == index and meta["object_property"] == v.meta["object_property"]
        assert meta["collision"] == v.meta["collision"] and meta["num_frames"] == 20
        assert json.loads(raw["questions.json"])["questions"] == v.questions["questions"]
    loader = VideoClipLoader(out / "train", batch_size=2, image_size=(24, 32))
    assert next(iter(loader))["masks"].shape == (2, 6, 24, 32)
    summary = convert_clevrer(root, tmp_path / "again", "train", progress=False)
    assert (summary["videos"], summary["skipped"], summary["with_masks"]) == (2, 1, 2)  # video_00002.mp4 is corrupt


def test_flattened_layout_and_missing_data(tmp_path, clevrer_root):
    """The original project's flattened layout (ROOT/train/video_XXXXX.mp4) is found too; a non-CLEVRER directory is
    a clear error."""
    root, _ = clevrer_root
    flat = tmp_path / "flat" / "train"
    flat.mkdir(parents=True)
    src = next(root.rglob("video_00001.mp4"))
    (flat / "video_00001.mp4").write_bytes(src.read_bytes())
    assert [i for i, _ in find_videos(tmp_path / "flat", "train")] == [1]
    with pytest.raises(ClevrerLayoutError, match="no CLEVRER videos"):
        find_videos(tmp_path / "flat", "val")
    assert main(["data", "clevrer", "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
