"""`cjepa plan` output a user reads: results.json, results.md with the same numbers, tensorboard scalars, videos.

A random-weight predictor saved as a plain state_dict plans on a tiny `cjepa pusht` store (its proprio/action
statistics fitted on the store), with the simulator oracle beside it; CEM and budget are cut so that it runs
in seconds. The numbers are plumbing checks, not skill."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from cjepa.cli import main
from cjepa.config import load_config
from cjepa.models.predictor import build_predictor

MODEL = ["model.slot_dim=16", "model.heads=2", "model.depth=1", "model.mlp_dim=32"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tiny `cjepa pusht` store and a random-weight predictor: (the plan command's arguments, its folder)."""
    tmp = tmp_path_factory.mktemp("plan")
    common = ["-c", "configs/pusht/state_slots.yaml", *MODEL, f"data.path={tmp / 'slots'}",
              f"run.out_dir={tmp / 'runs'}",
              "run.device=cpu"]
    assert main(["pusht", *common, f"data.pusht.out={tmp}", "data.pusht.videos=false", "data.pusht.expert_train=1",
                 "data.pusht.random_train=0", "data.pusht.expert_val=1"]) == 0
    torch.manual_seed(0)
    ckpt = tmp / "model.pt"
    torch.save(build_predictor(load_config(["configs/pusht/state_slots.yaml"], MODEL).model).state_dict(), ckpt)
    plan = ["plan.episodes=3", "plan.seeds=[0,1]", "plan.num_samples=24", "plan.topk=4", "plan.iterations=2",
            "plan.horizon=2",
            "plan.receding_horizon=2", "plan.budget=12", "plan.videos=1", "plan.video_size=32", "plan.oracle=true",
            "plan.oracle_cost=state"]
    return ["plan", *common, *plan, "--checkpoint", str(ckpt), "--dataset", str(tmp / "slots"), "--no-progress"], tmp


@pytest.fixture(scope="module")
def planned(store):
    args, tmp = store
    out = tmp / "plan"
    assert main([*args, "plan.workers=2", f"plan.out={out}"]) == 0
    return out, json.loads((out / "results.json").read_text())


def markdown_rows(text: str) -> dict[str, list[str]]:
    """{first cell: cells} of the markdown table rows (header and separator excluded)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def test_results_md_has_the_numbers_of_results_json(planned):
    out, res = planned
    rows = markdown_rows((out / "results.md").read_text())
    assert set(rows) == {"model", "simulator", "zero action"}
    for m in res["models"]:
        cells = rows[m["name"]]
        assert [float(c) for c in cells[1:3]] == pytest.approx([m["success_rate_per_seed"][s] for s in ("0", "1")],
                                                               abs=0.05)
        mean, std = map(float, cells[3].split("+-"))
        assert (mean, std) == pytest.approx((m["success_rate_mean"], m["success_rate_std"]), abs=0.05)
        lo, hi = map(float, re.fullmatch(r"\[(.*), (.*)\]", cells[4]).groups())
        assert [lo, hi] == pytest.approx(m["success_rate_ci95"], abs=0.05)
        assert float(cells[5]) == pytest.approx(m["plan_seconds_median"], rel=1e-3, abs=1e-4)
    assert float(rows["zero action"][3]) == pytest.approx(res["zero_action_success"], abs=0.05)


def test_success_curve_in_results_json(planned):
    _, res = planned
    assert res["models"][1]["success_rate_mean"] > 0  # the oracle solves a pair here: the curve has a step to check
    for m in res["models"]:
        curve = m["success_by_step"]
        assert len(curve) == 12 and all(a <= b for a, b in zip(curve, curve[1:]))
        assert curve[-1] == pytest.approx(m["success_rate_mean"])
        eps = [e for seed in m["episodes"].values() for e in seed]
        within = [100 * sum(e["success"] and e["steps"] <= k for e in eps) / len(eps) for k in range(1, 13)]
        assert curve == pytest.approx(within)  # seeds have equal episode counts: their mean curve is the pooled one


def test_tensorboard_has_the_curves_and_rates(planned):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, res = planned
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for m in res["models"]:
        name = m["name"]
        assert {f"{name}/success_by_step", f"{name}/success_rate_per_seed",
                f"{name}/plan_seconds_median_per_seed"} <= tags
        curve = acc.Scalars(f"{name}/success_by_step")
        assert [e.step for e in curve] == list(range(1, 13))
        assert [e.value for e in curve] == pytest.approx(m["success_by_step"])
        per_seed = {e.step: e.value for e in acc.Scalars(f"{name}/success_rate_per_seed")}
        assert per_seed == pytest.approx({int(s): v for s, v in m["success_rate_per_seed"].items()})


def test_videos_are_written(planned):
    import av

    from cjepa.plan.video import label_height

    _, res = planned
    for m in res["models"]:
        assert len(m["videos"]) == 1
        with av.open(m["videos"][0]) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == (3 * 32, 32 + label_height(32))


def test_tensorboard_has_the_episode_videos(planned):
    """Each model's recorded episode is a tensorboard video with one frame per step of its file."""
    from pathlib import Path

    from cjepa.plan.video import load_video
    from tests.tensorboard_helpers import event_videos

    out, res = planned
    for m in res["models"]:
        (path,) = m["videos"]
        ((step, video),) = event_videos(out / "tb", f"{m['name']}/episode/{Path(path).stem}")
        assert step == 0 and video.shape == load_video(path).shape


def test_parallel_workers_are_refused_off_the_cpu(monkeypatch, capsys):
    """plan.workers forks processes: on an accelerator that is one clear config error (rc 2), not a hang."""
    import cjepa.distributed.env as dist_env

    monkeypatch.setattr(dist_env, "pick_device", lambda *a, **k: torch.device("cuda", 0))
    assert main(["plan", "-c", "configs/pusht/state_slots.yaml", "plan.workers=2", "--checkpoint", "runs/none",
                 "--dataset", "data/none"]) == 2
    assert "plan.workers=2" in capsys.readouterr().err


def test_a_rerun_sets_the_previous_results_aside(tmp_path):
    """A second evaluation into the same plan.out starts clean; what the first wrote moves to previous/<n>."""
    from cjepa.commands.plan import set_aside_previous

    out = tmp_path / "plan"
    assert set_aside_previous(out) is None  # nothing there yet
    out.mkdir()
    (out / "results.json").write_text("first")
    (out / "episodes.jsonl").write_text('{"seed": 0}\n')
    (out / "tb").mkdir()
    (out / "tb" / "events.out.tfevents.1").write_text("curves")
    (out / "notes.txt").write_text("the user's own file")  # not an output of cjepa plan: stays
    first = set_aside_previous(out)
    assert first == out / "previous" / "1"
    assert (first / "results.json").read_text() == "first"
    assert (first / "episodes.jsonl").read_text() == '{"seed": 0}\n'
    assert (first / "tb" / "events.out.tfevents.1").read_text() == "curves"
    assert not (out / "results.json").exists() and not (out / "tb").exists()
    assert (out / "notes.txt").read_text() == "the user's own file"
    (out / "results.json").write_text("second")
    assert set_aside_previous(out) == out / "previous" / "2"
    assert (out / "previous" / "1" / "results.json").read_text() == "first"
    assert (out / "previous" / "2" / "results.json").read_text() == "second"


def test_a_busy_plan_folder_is_one_clear_error(tmp_path, capsys):
    """Two evaluations into one plan.out would interleave episodes.jsonl: the second stops with one line (rc 2)
    before it reads anything, and the first one's files stay where they are."""
    from cjepa.utils.run_dir import RunLock

    out = tmp_path / "plan"
    held = RunLock(out).acquire()
    (out / "results.json").write_text("running")
    try:
        assert main(["plan", "-c", "configs/pusht/state_slots.yaml", f"plan.out={out}", "--checkpoint", "runs/none",
                     "--dataset", "data/none"]) == 2
    finally:
        held.release()
    err = capsys.readouterr().err
    assert "in use by another run" in err and str(out) in err
    assert (out / "results.json").read_text() == "running"


def test_a_mistyped_path_leaves_no_plan_folder(tmp_path, capsys):
    """An evaluation that fails before planning anything (here a dataset path that does not exist) says so in
    one line and leaves no empty plan.out behind, so the corrected rerun starts as if it were the first."""
    out = tmp_path / "plan"
    assert main(["plan", "-c", "configs/pusht/state_slots.yaml", f"plan.out={out}", "--checkpoint",
                 str(tmp_path / "runs" / "pusht_cjepq"), "--dataset", "data/none"]) == 2
    err = capsys.readouterr().err
    assert "data/none" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def _episodes(results: dict) -> list:
    """Every episode of results.json without its timings (they differ run to run), videos by file name."""
    timing = ("plan_seconds", "wall_seconds")
    return [(m["name"], seed, [{k: v.rsplit("/", 1)[-1] if k == "video" else v for k, v in e.items()
                                if k not in timing} for e in eps])
            for m in results["models"] for seed, eps in sorted(m["episodes"].items())]


def test_an_interrupted_evaluation_resumes_where_it_stopped(store, planned, tmp_path, monkeypatch, capsys):
    """Ctrl-C after 4 of the 12 episodes (2 models x 2 seeds x 3): the rerun plans only the 8 others, keeps the
    4, and ends with the episodes of the uninterrupted run; a changed config starts over instead."""
    from cjepa.plan import evaluate

    args, _ = store
    out = tmp_path / "plan"
    planned_now = []
    real_run = evaluate.EpisodeRunner.run

    def run(self, job, stop_after=None):
        if stop_after is not None and len(planned_now) == stop_after:
            raise KeyboardInterrupt
        planned_now.append((job.seed, job.index))
        return real_run(self, job)

    monkeypatch.setattr(evaluate.EpisodeRunner, "run", lambda self, job: run(self, job, stop_after=4))
    assert main([*args, "plan.workers=1", f"plan.out={out}"]) == 130  # Ctrl-C: one line, rc 130
    assert not (out / "results.json").exists() and len((out / "episodes.jsonl").read_text().splitlines()) == 4
    with open(out / "episodes.jsonl", "a") as fh:
        fh.write('{"model": "simulator", "se')  # a line the interruption cut short
    planned_now.clear()
    monkeypatch.setattr(evaluate.EpisodeRunner, "run", lambda self, job: run(self, job))
    assert main([*args, "plan.workers=1", f"plan.out={out}"]) == 0
    assert "resuming the interrupted evaluation" in capsys.readouterr().out
    assert len(planned_now) == 8 and not (out / "previous").exists()
    resumed = json.loads((out / "results.json").read_text())
    assert _episodes(resumed) == _episodes(planned[1])
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]  # every line whole
    assert sorted((r["model"], r["seed"], r["index"]) for r in rows) == sorted(
        (m, s, i) for m in ("model", "simulator") for s in (0, 1) for i in range(3))

    # the same folder, another evaluation (more CEM samples): nothing to resume, the finished run is set aside
    planned_now.clear()
    (out / "results.json").unlink()  # as if it had been interrupted too
    assert main([*args, "plan.workers=1", "plan.num_samples=32", f"plan.out={out}"]) == 0
    assert len(planned_now) == 12 and (out / "previous" / "1" / "episodes.jsonl").exists()


def test_an_ensemble_plans_with_its_members_and_says_so(store, tmp_path):
    """plan.ensemble: the model row plans with plan.checkpoint and the listed members (results.json names each member
    and what was loaded); an ensemble of two copies of the checkpoint plans exactly as the checkpoint alone."""
    args, tmp = store
    ckpt = args[args.index("--checkpoint") + 1]
    twin = Path(shutil.copyfile(ckpt, tmp_path / "twin.pt"))
    alone, pair = tmp_path / "alone", tmp_path / "pair"
    one = ["plan.seeds=[0]", "plan.oracle=false", "plan.videos=0"]
    assert main([*args, *one, f"plan.out={alone}"]) == 0
    assert main([*args, *one, f"plan.ensemble=[{twin}]", f"plan.out={pair}"]) == 0
    res = json.loads((pair / "results.json").read_text())
    assert [m["checkpoint"] for m in res["ensemble"]] == [str(twin)]
    assert "twin.pt" in res["ensemble"][0]["loaded"]
    assert _episodes(res) == _episodes(json.loads((alone / "results.json").read_text()))
