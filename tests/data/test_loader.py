"""cjepa.data.loader: the CPU clip pipeline (batch contract, shard round trip, deterministic split, resume) and bad
data."""

import json
import logging
from collections import Counter

import numpy as np
import pytest
import torch

from cjepa.config import ConfigError, DataConfig, load_config
from cjepa.data.loader import ClipSpec, ClipStream, DataError, VideoClipLoader, build_clip_loader, iter_videos
from cjepa.data.shards import EncodedSample, ShardError, ShardWriter, decode_masks, encode_masks, open_split, read_index
from cjepa.data.video import decode_frames, denormalise, encode_video, preprocess_frames, resize_masks
from cjepa.data.world.generate import generate_video
from tests.data.conftest import tiny_world
from tests.video_helpers import take_batches

KEYS = [f"video_{i:06d}" for i in range(7)]


def raw_sample(split_dir, key):
    """A sample's components read straight from the tar (for reference values)."""
    import tarfile

    for tar in sorted(split_dir.glob("*.tar")):
        with tarfile.open(tar) as tf:
            names = tf.getnames()
            if f"{key}.mp4" in names:
                return {n.partition(".")[2]: tf.extractfile(n).read() for n in names if n.startswith(key + ".")}
    raise KeyError(key)


def test_clip_batch_contract(world_shards):
    """frames (B,T,3,H,W) f32 = preprocess_frames of the decoded frames at frame_index; masks (B,T,H,W) i16; keys;
    frame_index (B,T) i64."""
    loader = VideoClipLoader(world_shards / "train", batch_size=3, clip=ClipSpec(5, 2), image_size=(24, 32), seed=1)
    batch = next(iter(loader))
    assert batch["frames"].shape == (3, 5, 3, 24, 32) and batch["frames"].dtype == torch.float32
    assert batch["masks"].shape == (3, 5, 24, 32) and batch["masks"].dtype == torch.int16
    assert batch["frame_index"].shape == (3, 5) and batch["frame_index"].dtype == torch.int64
    assert len(batch["keys"]) == 3 and set(batch["keys"]) <= set(KEYS)
    assert (batch["frame_index"].diff(dim=1) == 2).all()
    for i, key in enumerate(batch["keys"]):
        raw = raw_sample(world_shards / "train", key)
        idx = batch["frame_index"][i].numpy()
        torch.testing.assert_close(batch["frames"][i], preprocess_frames(decode_frames(raw["mp4"], idx), (24, 32)))
        np.testing.assert_array_equal(batch["masks"][i].numpy(),
                                      resize_masks(decode_masks(raw["masks.npz"], idx), (24, 32)))


def test_shard_round_trip_matches_the_generated_video(world_shards):
    """write -> read at full size: frames within codec tolerance of what the world rendered, masks exactly."""
    loader = VideoClipLoader(world_shards / "train", batch_size=7, clip=ClipSpec(4, 3, "chunks"), image_size=(48, 64),
                             train=False)
    seen, videos = 0, {}
    for batch in loader:
        for i, key in enumerate(batch["keys"]):
            if key not in videos:
                videos[key] = generate_video(tiny_world(), "train", int(key.split("_")[1]))
            v = videos[key]
            idx = batch["frame_index"][i].numpy()
            got = denormalise(batch["frames"][i]).permute(0, 2, 3, 1).numpy() * 255
            mse = np.mean((got - v.frames[idx].astype(np.float64)) ** 2)
            assert 10 * np.log10(255**2 / mse) > 30
            np.testing.assert_array_equal(batch["masks"][i].numpy(), v.masks[idx])
            seen += 1
    assert seen == 7 * 2  # 20 frames, span 10: two non-overlapping chunks per video in evaluation mode


def test_shard_split_is_deterministic_and_disjoint(world_shards):
    """In a pass, the global workers (rank x worker) read disjoint sets of samples that cover the split, whether there
    are fewer workers than shards (shard-level split) or more (every G-th sample); the same seed gives the same order.
    """
    split = open_split(world_shards / "train")
    for world, workers in ((1, 2), (2, 2), (3, 1)):
        for pass_ in (0, 1):
            seen = []
            for rank in range(world):
                stream = ClipStream(split, batch_size=2, clip=ClipSpec(), image_size=None, with_masks=False, train=True,
                                    seed=5, rank=rank,
                                    world_size=world, num_workers=workers, shuffle_buffer=4, decode_threads=1,
                                    positions={}, rotation=0)
                for w in range(workers):
                    seen += [s["__key__"] for s in stream.emission(pass_, rank * workers + w, lambda *a: None)]
            assert sorted(seen) == KEYS, (world, workers, pass_)

    def keys(seed):
        loader = VideoClipLoader(split, batch_size=2, clip=ClipSpec(3, 2), image_size=(16, 16), seed=seed, world_size=2,
                                 rank=1)
        return [(b["keys"], b["frame_index"].tolist()) for b in loader]

    assert keys(3) == keys(3) != keys(4)


def test_resume_continues_the_uninterrupted_stream(world_shards):
    """Stop after k batches, save the position, restart in a new loader: the next batches are the ones an uninterrupted
    run would have produced (two DataLoader workers, across epoch and pass boundaries)."""
    kw = dict(batch_size=2, clip=ClipSpec(3, 2), image_size=(16, 16), seed=11, num_workers=2, shuffle_buffer=3)

    full = take_batches(VideoClipLoader(world_shards / "train", **kw), 9)
    first = VideoClipLoader(world_shards / "train", **kw)
    head = take_batches(first, 4)
    state = json.loads(json.dumps(first.state_dict()))  # survives a checkpoint as JSON
    resumed = VideoClipLoader(world_shards / "train", **kw)
    resumed.load_state_dict(state)
    assert head + take_batches(resumed, 5) == full


def test_iter_videos_sorted_strided_and_rank_split(world_shards):
    """Whole videos in sorted key order, every stride-th frame, rank r of W takes keys r, r+W, ...; masks and meta
    ride along."""
    out = list(iter_videos(world_shards / "train", image_size=(24, 32), stride=3))
    assert [k for k, *_ in out] == KEYS
    key, frames, masks, meta = out[2]
    assert frames.shape == (7, 3, 24, 32) and masks.shape == (7, 24, 32) and masks.dtype == torch.int16
    assert meta["key"] == key and meta["num_frames"] == 20 and "object_property" in meta
    ranks = [[k for k,
              *_ in iter_videos(world_shards / "train", image_size=(8, 8), rank=r, world_size=3,
                                num_workers=1)] for r in range(3)]
    assert ranks == [KEYS[0::3], KEYS[1::3], KEYS[2::3]]


def test_build_clip_loader_from_config(world_shards):
    cfg = DataConfig(shards=str(world_shards), video_batch_size=2, clip_frames=3, image_size=(16, 16))
    loader = build_clip_loader(cfg, "train", seed=0)
    assert isinstance(loader, VideoClipLoader) and loader.with_masks
    assert next(iter(loader))["frames"].shape == (2, 3, 3, 16, 16)
    with pytest.raises(ShardError, match="data.shards is empty"):
        build_clip_loader(DataConfig(), "train")


def test_config_streams_shard_urls(world_shards):
    """data.shards as a pipe: URL pattern with {split}, data.batches_per_epoch as the epoch, data.resampled passed on;
    DALI refuses URLs, and a negative epoch length is a config error."""
    url = f"pipe:cat {world_shards}/{{split}}/world-{{split}}-{{000000..000002}}.tar"
    cfg = DataConfig(shards=url, video_batch_size=2, clip_frames=3, image_size=(16, 16), batches_per_epoch=2,
                     resampled=True)
    loader = build_clip_loader(cfg, "train", seed=0)
    assert loader.split.remote and len(loader) == 2 and loader.resampled
    assert len(list(loader)) == 2
    with pytest.raises(ShardError, match="needs local shards"):
        build_clip_loader(DataConfig(shards=url, decoder="dali", batches_per_epoch=2), "train")
    with pytest.raises(ConfigError, match="data.batches_per_epoch=-1"):
        load_config(overrides=["data.batches_per_epoch=-1"])


# --------------------------------------------------------------------------------------------- bad data


def good(key, T=12):
    frames = np.full((T, 32, 48, 3), 140, np.uint8)
    masks = np.zeros((T, 32, 48), np.uint8)
    for t in range(T):
        frames[t, 8:20, 4 + 2 * t : 16 + 2 * t] = (200, 30, 30)
        masks[t, 8:20, 4 + 2 * t : 16 + 2 * t] = 1
    return frames, masks


def meta_bytes(key, **over):
    m = {"key": key, "source": "world", "split": "train", "fps": 10.0, "num_frames": 12, "height": 32, "width": 48,
         "codec": "h264"}
    m.update(over)
    return json.dumps({k: v for k, v in m.items() if v is not None}).encode()


def bad_split(root):
    """9 samples in 3 shards: 5 good, a garbage mp4, a zero-length mp4, a meta without num_frames, one without masks;
    the last shard is then cut inside its last sample (g4)."""
    frames, masks = good("g")
    video = encode_video(frames, fps=10)
    m = encode_masks(masks)

    def sample(key, mp4=video, meta=None, with_masks=True):
        files = {"mp4": mp4, "json": meta or meta_bytes(key)}
        if with_masks:
            files["masks.npz"] = m
        return EncodedSample(key, files, 12, 32, 48)

    with ShardWriter(root, "train", shard_size=3, fps=10) as w:
        for s in (sample("g0"), sample("b_corrupt", mp4=b"\x00\x01garbage" * 50), sample("g1"),
                  sample("b_empty", mp4=b""), sample("g2"),
                  sample("b_meta", meta=meta_bytes("b_meta", num_frames=None)),
                  sample("b_nomask", with_masks=False), sample("g3"), sample("g4")):
            w.add(s)
    last = root / "train" / w.manifest["shards"][-1]["file"]
    off, size = read_index(root / "train" / w.manifest["shards"][-1]["index"])[-1]["components"]["mp4"]
    last.write_bytes(last.read_bytes()[: off + size // 2])  # cut inside g4.mp4
    return root / "train"


EXPECTED_SKIPS = {"bad_video": 2, "bad_meta": 1, "missing_component": 1, "truncated_shard": 1}
BAD_KEYS = {"b_corrupt", "b_empty", "b_meta", "b_nomask", "g4"}


def check_logged(caplog, split_dir):
    lines = [r.getMessage() for r in caplog.records if r.name == "cjepa.data" and "skipped sample" in r.getMessage()]
    for key in BAD_KEYS:
        mine = [line for line in lines if f"key {key}:" in line]
        assert len(mine) == 1, (key, lines)  # one clear line per bad sample, naming shard and key
        assert str(split_dir) in mine[0] and ".tar" in mine[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_samples_are_skipped_counted_and_logged(tmp_path, caplog, workers):
    """Corrupt / empty mp4, missing json field, missing component, truncated tar: skipped, counted by reason, one log
    line each naming shard and key; every good sample still arrives; nothing crashes or hangs."""
    split_dir = bad_split(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cjepa.data"):
        loader = VideoClipLoader(split_dir, batch_size=2, clip=ClipSpec(4, 2), image_size=(16, 16), with_masks=True,
                                 train=False,
                                 num_workers=workers)
        keys = sorted(k for b in loader for k in b["keys"])
    assert sorted(set(keys)) == ["g0", "g1", "g2", "g3"]
    assert dict(loader.skipped) == EXPECTED_SKIPS
    assert {k for _, k, _, _ in loader.bad_samples} == BAD_KEYS
    check_logged(caplog, split_dir)


def test_bad_samples_in_training_mode_count_every_pass_and_log_once(tmp_path, caplog):
    split_dir = bad_split(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cjepa.data"):
        loader = VideoClipLoader(split_dir, batch_size=2, clip=ClipSpec(4, 2), image_size=(16, 16), with_masks=True,
                                 batches_per_epoch=5)
        for _ in range(2):  # 10 batches of 2 from 4 good videos: at least 4 passes
            for b in loader:
                assert set(b["keys"]) <= {"g0", "g1", "g2", "g3"}
    assert loader.skipped["bad_video"] >= 2 * 4 and loader.skipped["truncated_shard"] >= 4
    check_logged(caplog, split_dir)


def test_iter_videos_skips_bad_samples(tmp_path, caplog):
    split_dir = bad_split(tmp_path)
    stats = Counter()
    with caplog.at_level(logging.WARNING, logger="cjepa.data"):
        keys = [k for k, *_ in iter_videos(split_dir, image_size=(16, 16), with_masks=True, stats=stats)]
    assert keys == ["g0", "g1", "g2", "g3"]
    assert dict(stats) == EXPECTED_SKIPS
    check_logged(caplog, split_dir)


def test_nothing_decodable_is_an_error_not_a_hang(tmp_path):
    """A split whose every video is broken raises DataError during the first pass instead of looping forever."""
    with ShardWriter(tmp_path, "train", shard_size=2) as w:
        for i in range(3):
            w.add(EncodedSample(f"b{i}", {"mp4": b"junk" * 10, "json": meta_bytes(f"b{i}")}, 12, 32, 48))
    loader = VideoClipLoader(tmp_path / "train", batch_size=1, clip=ClipSpec(2, 1), image_size=(8, 8))
    with pytest.raises(DataError, match="none of the 3 samples"):
        next(iter(loader))


def test_unusable_splits_fail_before_training(tmp_path, world_shards):
    """Missing shards, an empty split, a split without manifest, fewer samples than workers: ShardError at
    construction."""
    with pytest.raises(ShardError):
        VideoClipLoader(tmp_path / "nope")
    with pytest.raises(ShardError, match="matches no file"):
        VideoClipLoader(str(tmp_path / "*.tar"))
    with pytest.raises(ShardError, match="fewer than world_size x workers"):
        VideoClipLoader(world_shards / "train", world_size=4, num_workers=2)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "x-000000.tar").write_bytes(b"")
    with pytest.raises(ShardError, match="no manifest"):
        VideoClipLoader(tmp_path / "half")
