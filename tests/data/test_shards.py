"""cjepa.data.shards: the one shard writer (world, CLEVRER, Push-T), its indexes and manifest, and split validation."""

import json
import tarfile

import numpy as np
import pytest

from cjepa.data.shards import (
    CODEC_IDS,
    VIDEO_INFO_EXT,
    ShardError,
    ShardWriter,
    decode_masks,
    decode_video_info,
    encode_masks,
    open_split,
    read_index,
    sha256_file,
)
from cjepa.data.video import decode_frames, encode_video, probe_video, psnr


def clip(seed, T=6, H=32, W=48):
    rng = np.random.default_rng(seed)
    frames = np.full((T, H, W, 3), 150, np.uint8)
    masks = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        y, x = 4 + t, int(rng.integers(2, 30))
        frames[t, y : y + 10, x : x + 12] = rng.integers(0, 255, 3)
        masks[t, y : y + 10, x : x + 12] = 1
    return frames, masks


def write_split(root, n=5, shard_size=2, **kw):
    with ShardWriter(root, "train", shard_size=shard_size, source="world", fps=10, config_version="t1",
                     generator={"name": "test"}, **kw) as w:
        for i in range(n):
            frames, masks = clip(i)
            q = {"scene_index": i, "video_filename": f"v{i}.mp4",
                 "questions": [{"question_id": 0, "question": "How many objects?",
                                                                               "question_type": "descriptive",
                                                                               "answer": "1"}]}
            w.write(f"v{i:03d}", frames, {"objects": [{"id": 1}], "state": [[0.0, 1.0]] * 6},
                    masks if i % 2 == 0 else None, q)
    return w


def test_writer_round_trip(tmp_path):
    """Write -> tars + idx + manifest; every component comes back: frames within codec tolerance, masks exact, meta,
    questions."""
    w = write_split(tmp_path)
    m = json.loads((tmp_path / "train" / "manifest.json").read_text())
    assert m == w.manifest
    assert (m["num_samples"], m["num_frames"], m["num_with_masks"], m["num_with_questions"]) == (5, 30, 3, 5)
    assert [s["num_samples"] for s in m["shards"]] == [2, 2, 1]
    assert (m["source"], m["codec"], m["fps"], m["config_version"],
            m["generator"]) == ("world", "h264", 10.0, "t1", {"name": "test"})
    for s in m["shards"]:
        p = tmp_path / "train" / s["file"]
        assert sha256_file(p) == s["sha256"] and p.stat().st_size == s["bytes"]
        with tarfile.open(p) as tf:
            names = tf.getnames()
            for entry in read_index(tmp_path / "train" / s["index"]):
                key = entry["key"]
                for ext, (off, size) in entry["components"].items():
                    member = tf.getmember(f"{key}.{ext}")
                    assert (member.offset_data, member.size) == (off, size)
                data = {ext: tf.extractfile(f"{key}.{ext}").read() for ext in entry["components"]}
                i = int(key[1:])
                frames, masks = clip(i)
                assert psnr(decode_frames(data["mp4"]), frames) > 30
                meta = json.loads(data["json"])
                assert meta["state"] == [[0.0, 1.0]] * 6 and meta["objects"] == [{"id": 1}]  # free-form meta kept
                assert (meta["key"], meta["num_frames"], meta["height"], meta["width"],
                        meta["split"]) == (key, 6, 32, 48, "train")
                assert json.loads(data["questions.json"])["questions"][0]["answer"] == "1"
                if i % 2 == 0:
                    np.testing.assert_array_equal(decode_masks(data["masks.npz"]), masks)
                    np.testing.assert_array_equal(decode_masks(data["masks.npz"], [4, 1]), masks[[4, 1]])
                else:
                    assert "masks.npz" not in data
        if s is m["shards"][0]:  # fixed member order: mp4, json, video info, masks, questions
            assert names == ["v000.mp4", "v000.json", "v000.video.i32", "v000.masks.npz", "v000.questions.json",
                             "v001.mp4", "v001.json", "v001.video.i32", "v001.questions.json"]


def test_index_matches_wds2idx(tmp_path):
    """Our .idx files are what DALI's own wds2idx tool writes for the same tar."""
    wds2idx = pytest.importorskip("wds2idx")
    w = write_split(tmp_path, n=3, shard_size=3)
    tar = tmp_path / "train" / w.manifest["shards"][0]["file"]
    with wds2idx.IndexCreator(str(tar), str(tmp_path / "ref.idx"), verbose=False) as ic:
        ic.create_index()
    ours = (tmp_path / "train" / w.manifest["shards"][0]["index"]).read_text().split()
    assert ours == (tmp_path / "ref.idx").read_text().split()


def test_webdataset_reads_our_shards(tmp_path):
    """Plain webdataset sees one sample per key with all its components."""
    import webdataset as wds

    w = write_split(tmp_path, n=3, shard_size=3)
    ds = wds.WebDataset(str(tmp_path / "train" / w.manifest["shards"][0]["file"]), shardshuffle=False)
    samples = list(ds)
    assert [s["__key__"] for s in samples] == ["v000", "v001", "v002"]
    assert set(samples[0]) >= {"mp4", "json", "masks.npz", "questions.json"}
    assert "masks.npz" not in samples[1]


def test_shards_are_byte_identical_for_identical_input(tmp_path):
    a = write_split(tmp_path / "a")
    b = write_split(tmp_path / "b")
    assert [s["sha256"] for s in a.manifest["shards"]] == [s["sha256"] for s in b.manifest["shards"]]


def test_writer_refuses_bad_input(tmp_path):
    """Bad keys, duplicates, mismatched masks, contradicting reserved meta, existing splits: clear errors."""
    frames, masks = clip(0)
    with ShardWriter(tmp_path, "train", shard_size=2) as w:
        with pytest.raises(ValueError, match="no dots"):
            w.write("a.b", frames, {})
        w.write("ok", frames, {})
        with pytest.raises(ValueError, match="duplicate"):
            w.write("ok", frames, {})
        with pytest.raises(ValueError, match="masks shape"):
            w.write("m", frames, {}, masks[:, :5])
        with pytest.raises(ValueError, match="contradicts"):
            w.write("f", frames, {"fps": 99.0})
        with pytest.raises(ValueError, match="JSON"):
            w.write("j", frames, {"x": np.float32(1)})
    with pytest.raises(ShardError, match="overwrite"):
        ShardWriter(tmp_path, "train")
    ShardWriter(tmp_path, "train", overwrite=True)


def test_interrupted_writer_leaves_no_manifest(tmp_path):
    """An exception inside the writer keeps finished shards but writes no manifest: readers refuse the split."""
    frames, _ = clip(0)
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, "train", shard_size=1) as w:
            w.write("a", frames, {})
            w.write("b", frames, {})
            raise RuntimeError("killed")
    assert not (tmp_path / "train" / "manifest.json").exists()
    assert not list((tmp_path / "train").glob("*.tmp"))
    with pytest.raises(ShardError, match="did not finish"):
        open_split(tmp_path / "train")


def test_open_split_errors_before_reading(tmp_path):
    """Missing directory, missing shard file, empty split, unmatched pattern, empty list: ShardError naming the path."""
    with pytest.raises(ShardError, match="not a split directory"):
        open_split(tmp_path / "nothing")
    write_split(tmp_path, n=3)
    info = open_split(tmp_path, "train")
    assert len(info.shards) == 2 and info.num_samples == 3 and not info.problems
    (tmp_path / "train" / "world-train-000001.tar").unlink()
    with pytest.raises(ShardError, match="missing"):
        open_split(tmp_path / "train")
    with pytest.raises(ShardError, match="matches no file"):
        open_split(str(tmp_path / "x-*.tar"))
    with pytest.raises(ShardError, match="empty shard list"):
        open_split([])
    m = json.loads((tmp_path / "train" / "manifest.json").read_text())
    m["shards"], m["num_samples"] = [], 0
    (tmp_path / "train" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ShardError, match="empty"):
        open_split(tmp_path / "train")
    with pytest.raises(ShardError, match="no samples"):
        ShardWriter(tmp_path / "e", "train").close()


def test_open_split_reports_truncation_and_checksums(tmp_path):
    w = write_split(tmp_path, n=3)
    p = tmp_path / "train" / w.manifest["shards"][0]["file"]
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    info = open_split(tmp_path / "train")
    assert any("truncated" in x for x in info.problems)
    p.write_bytes(data[:-1] + b"x")
    assert any("sha256" in x for x in open_split(tmp_path / "train", verify_checksums=True).problems)


def test_masks_codec_wide_ids():
    m = np.zeros((3, 5, 4), np.int32)
    m[1, 2, 3] = 300
    back = decode_masks(encode_masks(m))
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, m)
    with pytest.raises(ValueError, match="corrupt"):
        decode_masks(b"PK garbage")


def test_samples_carry_their_probed_video_info(tmp_path):
    """Every sample, encoded here or passed through (CLEVRER), gets KEY.video.i32: what a probe of its mp4 finds
    (frames,
    size, codec) and the mp4's byte count, as int32; the manifest counts them. The DALI pipeline reads it natively."""
    w = write_split(tmp_path, n=3)
    with ShardWriter(tmp_path, "enc", shard_size=4, source="clevrer", codec="vp9", fps=10) as we:
        frames, _ = clip(7, T=9)
        we.write_encoded("p0", encode_video(frames, fps=10, codec="vp9"))
    assert w.manifest["num_with_video_info"] == 3 and we.manifest["num_with_video_info"] == 1
    for split, n in (("train", 3), ("enc", 1)):
        for s in open_split(tmp_path / split).shards:
            with tarfile.open(s.path) as tf:
                for entry in read_index(s.index_path):
                    assert VIDEO_INFO_EXT in entry["components"]
                    mp4 = tf.extractfile(f"{entry['key']}.mp4").read()
                    info, probe = (
                        decode_video_info(tf.extractfile(f"{entry['key']}.{VIDEO_INFO_EXT}").read()),
                        probe_video(mp4),
                    )
                    assert info == {"version": 1, "num_frames": probe.num_frames, "height": probe.height,
                                    "width": probe.width,
                                    "codec": CODEC_IDS[probe.codec], "mp4_bytes": len(mp4)}
                    assert (info["num_frames"],
                            info["codec"]) == ((6, CODEC_IDS["h264"]) if split == "train" else (9, CODEC_IDS["vp9"]))
    with pytest.raises(ValueError, match="expected 24"):
        decode_video_info(b"\0" * 8)
    with pytest.raises(ValueError, match="version 7"):
        decode_video_info(np.asarray([7, 1, 1, 1, 1, 1], "<i4").tobytes())
