"""The CLI's error contract: a failure the user can act on is one line naming what and where, exit code 2, no
traceback (``--debug`` shows it); argument parsing (overrides after options, hints, shipped configs, no torch)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch

from cjepa.cli import build_parser, main, parse
from cjepa.config import load_config
from cjepa.errors import UserError
from cjepa.models.predictor import build_predictor
from tests.helpers import REPO, SMOKE


def _fails_with_one_line(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI in-process; assert rc 2 and exactly one stderr line, without a traceback, holding every needle."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# --------------------------------------------------------------------------------------------- data paths


def test_missing_slot_pickle(tmp_path, capsys):
    _fails_with_one_line(capsys, ["train", "-c", SMOKE, "data.source=pickle", f"data.path={tmp_path / 'none.pkl'}",
                                  f"run.out_dir={tmp_path}"], "cjepa train:", str(tmp_path / "none.pkl"))


def test_slot_pickle_that_would_run_code(tmp_path, capsys):
    """Through the CLI too: refused, the global named, nothing run."""

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    with open(tmp_path / "slots.pkl", "wb") as fh:
        pickle.dump({"train": {"v": RunsCode()}, "val": {}}, fh)
    _fails_with_one_line(capsys, ["train", "-c", SMOKE, "data.source=pickle", f"data.path={tmp_path / 'slots.pkl'}",
                                  f"run.out_dir={tmp_path}"], str(tmp_path / "slots.pkl"),
                                  f"{os.system.__module__}.system")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("command, key", [
    (["train-encoder", "-c", "configs/smoke/encoder.yaml"], "encoder.data.path"),
    (["pretrain", "-c", "configs/smoke/pretrain.yaml"], "data.shards"),
])
@pytest.mark.parametrize("shards", ["missing", "empty"])
def test_missing_or_empty_shard_directory(tmp_path, capsys, command, key, shards):
    """A shard root that does not exist, or holds an empty split directory, is one line naming it in both video
    commands (train-encoder raised a bare FileNotFoundError for the empty one, pretrain a ShardError)."""
    root = tmp_path / "shards"
    if shards == "empty":
        (root / "train").mkdir(parents=True)
    _fails_with_one_line(capsys, [*command, f"{key}={root}", f"run.out_dir={tmp_path / 'runs'}"],
                         f"cjepa {command[0]}:", str(root))


# --------------------------------------------------------------------------------------------- device, outputs


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a visible GPU")
def test_cuda_without_gpu(tmp_path, capsys):
    _fails_with_one_line(capsys, ["train", "-c", SMOKE, "run.device=cuda", f"run.out_dir={tmp_path}"],
                         "run.device=cuda",
                         "no CUDA device")


def test_unwritable_out_dir_and_out(tmp_path, capsys):
    """run.out_dir and --out below a file: named before any work starts."""
    (tmp_path / "afile").write_text("")
    _fails_with_one_line(capsys, ["train", "-c", SMOKE, f"run.out_dir={tmp_path / 'afile' / 'runs'}"], "run.out_dir=",
                         str(tmp_path / "afile"))
    _fails_with_one_line(capsys, ["data", "world", "--num-videos", "1", "--out", str(tmp_path / "afile" / "w")],
                         "--out=",
                         str(tmp_path / "afile"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_out_dir_without_write_permission(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    _fails_with_one_line(capsys, ["train", "-c", SMOKE, f"run.out_dir={locked / 'runs'}"], "no write permission",
                         str(locked))


def test_num_videos_zero(tmp_path, capsys):
    _fails_with_one_line(capsys, ["data", "world", "--num-videos", "0", "--out", str(tmp_path)], "--num-videos",
                         "got 0")


# --------------------------------------------------------------------------------------------- vqa score, plan,
# checkpoints


def test_vqa_score_with_missing_files(tmp_path, capsys):
    (tmp_path / "q.json").write_text("[]")
    _fails_with_one_line(capsys,
                         ["vqa", "score", "--questions", str(tmp_path / "none.json"), "--predictions",
                          str(tmp_path / "q.json")],
                         "question file not found", str(tmp_path / "none.json"))
    _fails_with_one_line(capsys,
                         ["vqa", "score", "--questions", str(tmp_path / "q.json"), "--predictions",
                          str(tmp_path / "p.json")],
                         "prediction file not found", str(tmp_path / "p.json"))
    (tmp_path / "p.json").write_text("{not json")
    _fails_with_one_line(capsys,
                         ["vqa", "score", "--questions", str(tmp_path / "q.json"), "--predictions",
                          str(tmp_path / "p.json")],
                         "not valid JSON", str(tmp_path / "p.json"))


def test_plan_with_missing_files(tmp_path, capsys):
    _fails_with_one_line(capsys, ["plan", "-c", "configs/pusht/state_slots.yaml", "--checkpoint", str(tmp_path / "ck"),
                                  "--dataset", str(tmp_path / "ds")], "cjepa plan:", str(tmp_path / "ds"))


def test_checkpoint_of_another_model_size(tmp_path, capsys):
    """A state_dict of a slot_dim-16 predictor given to a slot_dim-32 model: the keys and both shapes are named."""
    small = build_predictor(load_config([SMOKE], ["model.slot_dim=16", "model.head_dim=8"]).model)
    torch.save(small.state_dict(), tmp_path / "small.pt")
    line = _fails_with_one_line(capsys, ["rollout", "-c", SMOKE, "model.slot_dim=32", "model.head_dim=8",
                                         f"rollout.checkpoint={tmp_path / 'small.pt'}", f"run.out_dir={tmp_path}"],
                                "does not fit the model", "shapes differ", "slot_dim=32")
    assert "16" in line and "32" in line


def test_rollout_with_missing_slots(tmp_path, capsys):
    ck = build_predictor(load_config([SMOKE]).model)
    torch.save(ck.state_dict(), tmp_path / "m.pt")
    """Each missing split is noted; with none left the command fails naming data.path (it used to exit 0)."""
    rc = main(["rollout", "-c", SMOKE, "data.source=pickle", f"data.path={tmp_path / 'none.pkl'}",
               f"rollout.checkpoint={tmp_path / 'm.pt'}", f"run.out_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and f"data.path={tmp_path / 'none.pkl'}" in err.splitlines()[-1]


# --------------------------------------------------------------------------------------------- --debug


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path, where):
    """--debug (before or after COMMAND) lets the error through to a full traceback."""
    argv = ["train", "-c", SMOKE, "run.device=cuda", f"run.out_dir={tmp_path}"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a visible GPU")
    with pytest.raises(UserError, match="run.device=cuda"):
        main(argv)


def test_bugs_keep_their_traceback(monkeypatch):
    """Only user errors become one line: anything else is a bug and propagates."""
    import cjepa.commands.train as train_cmd

    monkeypatch.setattr(train_cmd, "run", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["train"])


# --------------------------------------------------------------------------------------------- parsing


def test_overrides_may_follow_options():
    args = parse(build_parser("train"),
                 ["train", "-c", SMOKE, "optim.lr=1e-3", "--no-progress", "masking.num_masked=2"])
    assert args.overrides == ["optim.lr=1e-3", "masking.num_masked=2"] and args.no_progress and args.config == [SMOKE]


def test_unknown_flag_points_at_the_override(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--lr", "3e-4"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "unrecognized arguments: --lr" in err and "optim.lr=3e-4" in err


def test_shipped_configs_are_found_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert load_config(["configs/smoke/cpu.yaml"]) == load_config([SMOKE]) == load_config(["smoke/cpu.yaml"])
    _fails_with_one_line(capsys, ["train", "-c", "configs/smoke/cpu.yaml", "optim.lrr=1"], "did you mean 'optim.lr'")
    _fails_with_one_line(capsys, ["train", "-c", "configs/smoke/nope.yaml"], "config file not found", "nope.yaml")


def test_help_does_not_import_torch():
    """Building the parser (what `cjepa --help` does), with any one command's arguments (what `cjepa COMMAND
    --help` does), imports no torch (it took 1.4-2.2 s)."""
    code = ("import sys, cjepa.cli as c; c.build_parser().format_help(); "
            "[c.build_parser(name).format_help() for name in c.COMMANDS]; print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stdout + res.stderr
