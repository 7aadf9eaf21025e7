"""`cjepa probe` (cjepa/commands/probe.py): end to end on a predictor trained here, and its input errors."""

import json

import pytest

from cjepa.cli import main

TINY = ["train.max_steps=4", "train.val_every=4", "train.ckpt_every=4", "data.batch_size=8", "data.val_max_windows=16",
        "model.depth=2", "model.mlp_dim=32", "model.slot_dim=16", "model.heads=2", "model.history_frames=4",
        "model.pred_frames=2",
        "rollout.eval_videos=2", "data.synthetic.num_train=6", "data.synthetic.num_val=4",
        "data.synthetic.num_frames=40"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    assert main(["train", "-c", "world/demo_slots.yaml", f"run.out_dir={out}", "run.name=p", "--no-progress",
                 *TINY]) == 0
    return out / "p"


def test_probe_end_to_end(run_dir, tmp_path, capsys):
    out = tmp_path / "probe"
    assert main(["probe", "--checkpoint", str(run_dir), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ratio partner / others, last layer" in text and "ratio, layer 1" in text
    res = json.loads((out / "probe.json").read_text())
    assert res["events"] > 0 and res["events"] % 2 == 0 and len(res["ratio_per_layer"]) == 2 and res["ratio"] > 0
    assert res["history_frames"] == 4 and res["query_steps"] == [1, 2, 3] and res["collision_index"] == 2
    for f in ("probe_curve.png", "probe_example.png"):
        assert (out / f).stat().st_size > 1000
    assert list((out / "tb").glob("events.out.tfevents.*"))
    # the default output lives beside the checkpoint; --max-events caps the work
    assert main(["probe", "--checkpoint", str(run_dir), "--max-events", "2", "--window", "0"]) == 0
    res = json.loads((run_dir / "probe" / "probe.json").read_text())
    assert res["events"] == 2 and res["query_steps"] == [2]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint", "MISSING"], "checkpoint not found"),
        (["--window", "-1"], "--window must be >= 0"),
        (["--collision-step", "4"], "masked history step 1..3"),
        (["--split", "test"], "--split 'test'"),
    ],
)
def test_probe_bad_input_is_one_line(run_dir, tmp_path, capsys, args, message):
    argv = ["probe", "--checkpoint", str(run_dir), "--out", str(tmp_path), *args]
    if args[0] == "--checkpoint":
        argv = ["probe", *args[:1], str(tmp_path / args[1])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cjepa probe: ") and message in err and "\n" not in err
