"""`cjepa convert`: DeepSpeed folders from elsewhere load with weights_only=True; wrong inputs are one-line errors."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from cjepa.cli import main
from cjepa.config import load_config
from cjepa.models.predictor import build_predictor
from cjepa.trainer import run_dir_of, train
from tests.helpers import SMOKE

TAG = "global_step1"


class _RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint would do under weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _ds_folder(root: Path, files: dict[str, object]) -> Path:
    """A bare DeepSpeed save folder: ``latest`` naming TAG, and TAG/<file> for each entry."""
    (root / TAG).mkdir(parents=True)
    (root / "latest").write_text(TAG)
    for name, obj in files.items():
        torch.save(obj, root / TAG / name)
    return root


def _model_states(sd: dict, **extra) -> dict:
    # The keys DeepSpeed writes into *_model_states.pt that zero_to_fp32 reads.
    return {"module": sd, "buffer_names": [], "param_shapes": [OrderedDict((k, v.shape) for k, v in sd.items())],
            "shared_params": {}, "ds_version": "0.19.8", "ds_config": {"zero_optimization": {"stage": 0}}, **extra}


def _assert_one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("layout", ["zero0_model_states", "zero_optimizer_shards"])
def test_folder_that_would_run_code_is_refused(tmp_path, capsys, layout):
    """A DeepSpeed folder whose state file runs os.system when unpickled is refused before the call, whichever
    reader opens it (ours for ZeRO-0 model states, DeepSpeed's zero_to_fp32 for optimizer shards): rc 2, one line
    naming the file and the forbidden global, no marker file."""
    marker = tmp_path / "pwned"
    sd = {"w": torch.ones(3)}
    if layout == "zero0_model_states":
        bad = "mp_rank_00_model_states.pt"
        files = {bad: _model_states(sd, hook=_RunsCode(marker))}
    else:
        bad = "zero_pp_rank_0_mp_rank_00_optim_states.pt"
        files = {"zero_pp_rank_0_mp_rank_00_model_states.pt": _model_states(sd),
                 bad: {"optimizer_state_dict": {"zero_stage": 2, "partition_count": 1, "hook": _RunsCode(marker)}}}
    root = _ds_folder(tmp_path / "ds", files)
    assert main(["convert", str(root), "-o", str(tmp_path / "out.pt")]) == 2
    _assert_one_line_error(capsys.readouterr().err, str(root / TAG / bad), "refused to load",
                           f"{os.system.__module__}.system")
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_plain_zero0_folder_converts_through_the_safe_loader(tmp_path, capsys):
    """A legitimate ZeRO-0 folder (tensors, sizes, dicts) converts to exactly its module weights."""
    cfg = load_config([SMOKE])
    sd = build_predictor(cfg.model).state_dict()
    root = _ds_folder(tmp_path / "ds", {"mp_rank_00_model_states.pt": _model_states(sd)})
    assert main(["convert", str(root), "-o", str(tmp_path / "out.pt")]) == 0
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    assert out.keys() == sd.keys() and all(torch.equal(out[k], sd[k].float()) for k in sd)


def test_run_without_deepspeed_is_a_one_line_error(tmp_path, capsys):
    """`cjepa convert` on a run trained without DeepSpeed says its model.pt is already plain (rc 2, no traceback)."""
    cfg = load_config([SMOKE], [f"run.out_dir={tmp_path}", "run.name=single", "train.max_steps=2"])
    train(cfg, progress=False)
    capsys.readouterr()
    assert main(["convert", str(run_dir_of(cfg))]) == 2
    _assert_one_line_error(capsys.readouterr().err, "cjepa convert:", "without DeepSpeed", "step_0000002")


def test_missing_folder_and_unwritable_output_are_one_line_errors(tmp_path, capsys):
    """A path that does not exist, and an output below a file, each give rc 2 and one line naming the path."""
    assert main(["convert", str(tmp_path / "nowhere")]) == 2
    _assert_one_line_error(capsys.readouterr().err, str(tmp_path / "nowhere"))
    root = _ds_folder(tmp_path / "ds", {"mp_rank_00_model_states.pt": _model_states({"w": torch.ones(2)})})
    (tmp_path / "afile").write_text("")
    assert main(["convert", str(root), "-o", str(tmp_path / "afile" / "out.pt")]) == 2
    _assert_one_line_error(capsys.readouterr().err, "--out", str(tmp_path / "afile"))
