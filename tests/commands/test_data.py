"""cjepa data: the CLI writes a world split (with a summary table) and verifies it; misuse fails with a message."""

import json

from cjepa.cli import main


def test_world_then_verify(tmp_path, capsys):
    out = tmp_path / "shards"
    rc = main(["data", "world", "--split", "val", "--num-videos", "3", "--out", str(out), "--workers", "1",
               "--no-progress",
               "world.height=32", "world.width=48", "world.num_frames=12", "world.future_frames=8",
               "world.shard_size=2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "videos" in text and "generation s per video" in text
    manifest = json.loads((out / "val" / "manifest.json").read_text())
    assert (
        manifest["num_samples"] == 3
        and len(manifest["shards"]) == 2
        and manifest["generator"]["config"]["height"] == 32
    )
    assert main(["data", "verify", str(out), "--split", "val"]) == 0
    shard = out / "val" / manifest["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-600])
    assert main(["data", "verify", str(out), "--split", "val"]) == 1  # truncated: reported as a problem
    assert main(["data", "verify", str(tmp_path / "missing")]) == 2


def test_world_refuses_to_overwrite(tmp_path, capsys):
    args = ["data", "world", "--split", "train", "--num-videos", "1", "--out", str(tmp_path), "--workers", "1",
            "--no-progress",
            "world.height=32", "world.width=32", "world.num_frames=8", "world.future_frames=0", "world.questions=false"]
    assert main(args) == 0
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err  # names the flag that allows replacing the split
    assert main(args + ["--overwrite"]) == 0
