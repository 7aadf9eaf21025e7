"""The masking study: grid expansion, aggregation into table and plot, and a tiny end-to-end run."""

import json
from pathlib import Path

import pytest

from cjepa.config import ConfigError, load_config
from cjepa.data.billiards_vqa import write_billiards_vqa
from cjepa.eval.masking_study import cell_name, collect, expand_grid, run_cell, study_root, study_table


def test_grid_expands_first_axis_slowest():
    cells = expand_grid(["masking.num_masked=0,1,2", "run.seed=0,1"])
    assert len(cells) == 6 and cells[0] == ["masking.num_masked=0",
                                            "run.seed=0"] and cells[1] == ["masking.num_masked=0", "run.seed=1"]
    assert cell_name(cells[-1]) == "num_masked2_seed1"


def test_grid_entries_are_checked():
    with pytest.raises(ConfigError, match="study.grid entry"):
        load_config([], ['study.grid=["masking.num_masked"]'])
    with pytest.raises(ConfigError, match="study.protocols"):
        load_config([], ["study.protocols=[other]"])


def fake_results(root, num_masked, seed, cf_q, probe=None):
    cell = root / f"num_masked{num_masked}_seed{seed}"
    cell.mkdir(parents=True)
    m = {"overall": 0.8, "descriptive": 0.9, "explanatory_per_question": 0.7, "predictive_per_question": 0.6,
         "counterfactual_per_option": 0.75, "counterfactual_per_question": cf_q}
    vqa = {p: {"metrics": {**m, "counterfactual_per_question": cf_q + (0.1 if p == "counterfactual_rollout" else 0)}}
           for p in ("original", "counterfactual_rollout")}
    (cell / "results.json").write_text(json.dumps({"cell": cell.name,
                                                   "vqa": vqa} | ({} if probe is None else {"probe": probe})))


def test_collect_aggregates_over_seeds_and_writes_table_and_plot(tmp_path):
    cfg = load_config([],
                      [f"run.out_dir={tmp_path}", "study.name=s",
                       'study.grid=["masking.num_masked=0,2", "run.seed=0,1"]'])
    root = study_root(cfg)
    fake_results(root, 0, 0, 0.40, {"ratio": 1.0, "events": 8})
    fake_results(root, 0, 1, 0.50, {"ratio": 1.5, "events": 8})
    fake_results(root, 2, 0, 0.60)  # a cell finished before the probe existed: no ratio
    out = collect(cfg)
    assert out["cells_missing"] == ["num_masked2_seed1"]
    row = next(r for r in out["rows"] if r["protocol"] == "original" and r["masking.num_masked"] == "0")
    t1 = 12.706204736  # Student t, 97.5th percentile, 1 degree of freedom
    stat = row["counterfactual_per_question"]
    assert (stat["mean"], stat["std"], stat["n"]) == (pytest.approx(0.45), pytest.approx(0.05), 2)
    assert stat["ci95"] == pytest.approx(t1 * 0.05)  # sample sd 0.0707 / sqrt(2)
    assert row["replicates"] == 2
    cf = next(r for r in out["rows"] if r["protocol"] == "counterfactual_rollout" and r["masking.num_masked"] == "2")
    assert cf["counterfactual_per_question"]["mean"] == pytest.approx(0.70) and cf["replicates"] == 1
    assert cf["counterfactual_per_question"]["ci95"] is None
    # vs 0 masked slots under the same protocol, paired by seed: only seed 0 has both (0.70 - 0.50)
    assert cf["counterfactual_gain"] == pytest.approx(0.20) and cf["counterfactual_gain_ci95"] is None
    text = study_table(out)
    assert f"45.00 ± {100 * t1 * 0.05:.2f}" in text and "70.00" in text and "+20.00" in text
    assert row["probe_ratio"]["mean"] == pytest.approx(1.25) and cf["probe_ratio"]["mean"] is None
    assert "attn partner/others" in text and f"1.25 ± {t1 * 0.25:.2f}" in text
    assert (root / "study_plot.png").stat().st_size > 1000 and (root / "study_table.md").read_text().startswith(
        "| protocol"
    )


def test_counterfactual_gain_is_paired_by_seed_with_a_t_interval(tmp_path):
    """Three seeds: the gain over 0 masked slots is the mean of the per-seed differences, with the 95 % Student-t
    half-width of those differences (not of the two groups' spreads)."""
    cfg = load_config([], [f"run.out_dir={tmp_path}", "study.name=s", "study.protocols=[original]",
                           'study.grid=["masking.num_masked=0,2", "run.seed=0,1,2"]'])
    root = study_root(cfg)
    for seed, (m0, m2) in enumerate([(0.40, 0.55), (0.50, 0.60), (0.60, 0.80)]):
        fake_results(root, 0, seed, m0)
        fake_results(root, 2, seed, m2)
    out = collect(cfg)
    r = next(r for r in out["rows"] if r["protocol"] == "original" and r["masking.num_masked"] == "2")
    t2 = 4.302652730  # Student t, 97.5th percentile, 2 degrees of freedom
    assert r["counterfactual_gain"] == pytest.approx(0.15)  # per-seed gains 0.15, 0.10, 0.20
    assert r["counterfactual_gain_ci95"] == pytest.approx(t2 * 0.05 / 3 ** 0.5)
    assert r["counterfactual_per_question"]["ci95"] == pytest.approx(t2 * 0.1322876 / 3 ** 0.5, rel=1e-5)
    assert f"+15.00 ± {100 * t2 * 0.05 / 3 ** 0.5:.2f}" in study_table(out)


def test_collect_writes_the_table_as_csv_and_one_hparams_session_per_cell(tmp_path):
    """study_table.csv has the markdown table's header and cells; each finished cell has one HParams session
    (its grid values; every protocol's accuracies and the probe ratio) that collecting again rewrites."""
    import csv

    from tests.tensorboard_helpers import hparams_session

    grid = 'study.grid=["masking.num_masked=0,2", "run.seed=0"]'
    cfg = load_config([], [f"run.out_dir={tmp_path}", "study.name=s", grid])
    root = study_root(cfg)
    fake_results(root, 0, 0, 0.40, {"ratio": 1.5, "events": 8})
    fake_results(root, 2, 0, 0.60)
    collect(cfg)
    out = collect(cfg)
    with open(root / "study_table.csv", newline="", encoding="utf-8") as fh:
        csv_rows = list(csv.reader(fh))
    md = [[c.strip() for c in line.strip("|").split("|")] for line in study_table(out, markdown=True).splitlines()]
    assert csv_rows == [md[0], *md[2:]] and len(csv_rows) == 5  # header + 2 protocols x 2 grid values
    hp = root / "num_masked2_seed0" / "hparams"
    assert len(list(hp.glob("events.out.tfevents.*"))) == 1
    hparams, values, names = hparams_session(hp)
    assert hparams == {"masking.num_masked": 2.0, "run.seed": 0.0}
    assert values["counterfactual_rollout/counterfactual_per_question"] == pytest.approx(0.7)
    assert values["original/overall"] == pytest.approx(0.8) and len(names) == 12  # 6 metrics x 2 protocols, no probe
    assert hparams_session(root / "num_masked0_seed0" / "hparams")[1]["probe/probe_ratio"] == pytest.approx(1.5)


@pytest.mark.slow
def test_tiny_study_end_to_end_and_resume(tmp_path):
    """Two cells (0 and 1 masked slots) on a tiny billiards world: predictor -> rollouts -> counterfactual
    rollouts -> reasoners under both protocols -> table; a second call reuses every finished step."""
    world = tmp_path / "world"
    write_billiards_vqa(world, {"train": 10, "val": 4}, num_slots=4, slot_dim=16, observed_frames=24, total_frames=28,
                        max_objects=4)
    cfg = load_config([], [
        f"run.out_dir={tmp_path / 'runs'}", "run.device=cpu", "study.name=tiny",
        'study.grid=["masking.num_masked=0,1", "run.seed=0"]',
        "model.num_slots=4", "model.slot_dim=16", "model.history_frames=3", "model.pred_frames=2", "model.depth=1",
        "model.heads=2",
        "model.mlp_dim=16", "data.source=store", f"data.path={world / 'slots'}", "data.batch_size=16",
        "data.val_max_windows=16",
        "train.max_steps=3", "train.epochs=0", "train.val_every=3", "train.ckpt_every=3", "rollout.obs_frames=24",
        "rollout.target_frames=28",
        "rollout.eval_videos=2", "rollout.eval_chains=1",
        f"vqa.questions_train={world / 'questions/train.json'}", f"vqa.questions_val={world / 'questions/val.json'}",
        f"vqa.annotations={world / 'annotations.json'}", "vqa.video_len=24", "vqa.num_frames=4", "vqa.cf_frames=24",
        "vqa.word_dim=4", "vqa.heads=2", "vqa.depth=1", "vqa.ffn_dim=16", "vqa.head_hidden=8", "vqa.batch_size=16",
        "vqa.epochs=1",
        "vqa.eval_offsets=[0]", "train.log_every=1",
    ])
    cells = expand_grid(cfg.study.grid)
    for c in cells:
        res = run_cell(cfg, c, progress=False, log=lambda m: None)
        assert set(res["vqa"]) == {"original", "counterfactual_rollout"}
        val_cf = res["vqa"]["counterfactual_rollout"]["data"]["val"]
        assert val_cf["cf_from_rollout"] == val_cf["cf_questions"] > 0  # every CF question read its rollout
        assert res["counterfactual"]["val"]["planned"] == val_cf["cf_questions"]
        assert "ratio" in res["probe"] or "no annotation with collisions" in res["probe"]["skipped"]
    summary = study_root(cfg) / cell_name(cells[0]) / "predictor" / "summary.json"
    before = summary.stat().st_mtime
    out = collect(cfg)
    assert {(r["protocol"],
             r["masking.num_masked"]) for r in out["rows"]} == {(p,
                                                                 m) for p in ("original",
                                                                              "counterfactual_rollout") for m in "01"}
    run_cell(cfg, cells[0], progress=False, log=lambda m: None)  # finished: read back, nothing retrained
    assert summary.stat().st_mtime == before


def test_probe_cell_measures_the_attention_ratio_or_says_why_not(tmp_path):
    """The per-cell probe reads the store's object ids and the annotations' collisions; without annotations it
    records the reason instead of a number."""
    from cjepa.eval.masking_study import probe_cell
    from cjepa.models.predictor import MaskedSlotPredictor

    world = tmp_path / "world"
    write_billiards_vqa(world, {"val": 4}, num_slots=5, slot_dim=8, observed_frames=64, total_frames=68, max_objects=4)
    cfg = load_config([],
                      ["data.source=store", f"data.path={world / 'slots'}",
                       f"vqa.annotations={world / 'annotations.json'}"])
    model = MaskedSlotPredictor(num_slots=5, slot_dim=8, history_frames=4, pred_frames=2, depth=2, heads=2,
                                mlp_dim=16).eval()
    res = probe_cell(cfg, model, tmp_path / "probe", "cpu")
    assert res["events"] > 0 and len(res["ratio_per_layer"]) == 2 and res["ratio"] > 0
    assert (tmp_path / "probe" / "probe.json").is_file()
    cfg.vqa.annotations = ""
    assert "vqa.annotations" in probe_cell(cfg, model, tmp_path / "probe2", "cpu")["skipped"]


def tiny_world_study(tmp_path, world, data_path) -> list[str]:
    """Writes a tiny billiards world; the overrides of a study on it (predictor, rollouts, reasoner all tiny)."""
    write_billiards_vqa(world, {"train": 8, "val": 4}, num_slots=4, slot_dim=16, observed_frames=24, total_frames=28,
                        max_objects=4)
    return [
        f"run.out_dir={tmp_path / 'runs'}", "run.device=cpu", "model.num_slots=4", "model.slot_dim=16",
        "model.history_frames=3", "model.pred_frames=2", "model.depth=1", "model.heads=2", "model.mlp_dim=16",
        "data.source=store", f"data.path={data_path}", "data.batch_size=16", "data.val_max_windows=16",
        "train.max_steps=3", "train.epochs=0", "train.val_every=3", "train.ckpt_every=3", "rollout.obs_frames=24",
        "rollout.target_frames=28", "rollout.eval_videos=2", "rollout.eval_chains=1",
        f"vqa.questions_train={world / 'questions/train.json'}", f"vqa.questions_val={world / 'questions/val.json'}",
        f"vqa.annotations={world / 'annotations.json'}", "vqa.video_len=24", "vqa.num_frames=4", "vqa.cf_frames=24",
        "vqa.word_dim=4", "vqa.heads=2", "vqa.depth=1", "vqa.ffn_dim=16", "vqa.head_hidden=8", "vqa.batch_size=16",
        "train.log_every=1",
    ]


@pytest.mark.slow
def test_a_given_reasoner_is_evaluated_on_each_cells_rollouts_not_retrained(tmp_path):
    """study.reasoner: every cell evaluates that reasoner (with the frame sampling it was trained with) on its own
    val rollouts under both protocols; no reasoner is trained, nothing is written into the given reasoner's run,
    and only the val split gets counterfactual rollouts."""
    from cjepa.eval.vqa.reasoner import evaluate_checkpoint, train_reasoner

    world = tmp_path / "world"
    common = tiny_world_study(tmp_path, world, world / "slots")
    rcfg = load_config([], [*common, "run.name=reasoner", f"vqa.slots={world / 'slots'}", "vqa.epochs=1",
                            "vqa.frame_sampling=span"])
    train_reasoner(rcfg, progress=False)
    reasoner = tmp_path / "runs" / "reasoner"
    files_before = {p: p.stat().st_mtime for p in reasoner.rglob("*")}

    cfg = load_config([], [*common, "study.name=given", 'study.grid=["masking.num_masked=0,1", "run.seed=0"]',
                           f"study.reasoner={reasoner}", "study.splits=[val]"])  # the study itself says offsets
    for cell in expand_grid(cfg.study.grid):
        res = run_cell(cfg, cell, progress=False, log=lambda m: None)
        cdir = study_root(cfg) / cell_name(cell)
        assert res["reasoner"] == str(reasoner) and set(res["counterfactual"]) == {"val"}
        assert not list(cdir.glob("vqa_*/checkpoints")), "a reasoner was trained"
        for protocol in ("original", "counterfactual_rollout"):
            got = res["vqa"][protocol]
            assert got["data"]["val"]["slots"] == str(cdir / "rollout")
            assert got["offsets"] == [0]  # span sampling, from the checkpoint: one offset (offsets would give many)
            ecfg = load_config([], [*common, f"vqa.checkpoint={reasoner}", f"vqa.slots={cdir / 'rollout'}",
                                    f"vqa.cf_slots={cdir / 'counterfactual'}", f"vqa.protocol={protocol}"])
            ref, _, _ = evaluate_checkpoint(ecfg, progress=False, out_dir=tmp_path / "reference")
            assert got["metrics"] == pytest.approx({k: (None if v != v else v) for k, v in ref["metrics"].items()},
                                                   nan_ok=True)
        assert res["vqa"]["counterfactual_rollout"]["data"]["val"]["cf_from_rollout"] > 0
    assert {p: p.stat().st_mtime for p in reasoner.rglob("*")} == files_before
    out = collect(cfg)
    assert {r["masking.num_masked"] for r in out["rows"]} == {"0", "1"}


def test_a_missing_given_reasoner_fails_before_any_training(tmp_path):
    world = tmp_path / "world"
    write_billiards_vqa(world, {"train": 2, "val": 2}, num_slots=4, slot_dim=16, observed_frames=24, total_frames=28,
                        max_objects=4)
    cfg = load_config([], [f"run.out_dir={tmp_path / 'runs'}", "data.source=store", f"data.path={world / 'slots'}",
                           f"vqa.questions_train={world / 'questions/train.json'}", "rollout.obs_frames=24",
                           f"vqa.questions_val={world / 'questions/val.json'}", "vqa.video_len=24", "vqa.num_frames=4",
                           f"vqa.annotations={world / 'annotations.json'}", f"study.reasoner={tmp_path / 'nope'}"])
    with pytest.raises(ConfigError, match=r"study.reasoner=.*nope.* does not exist"):
        run_cell(cfg, ["masking.num_masked=0"], progress=False, log=lambda m: None)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_cells_use_the_predictors_a_sweep_trained(tmp_path, monkeypatch):
    """study.predictors: a `cjepa sweep` over the grid trains the predictors (here through submitit's in-process
    executor; on a cluster, a SLURM array); each cell rolls out and evaluates the job that trained its own grid
    values and trains none itself. A sweep of another model, or a job without its summary, is a clear error."""
    from cjepa.cli import main
    from cjepa.eval.vqa.reasoner import train_reasoner

    world = tmp_path / "world"
    monkeypatch.chdir(tmp_path)  # a relative data path, which the sweep's launcher writes as an absolute one
    common = tiny_world_study(tmp_path, world, "world/slots")
    train_reasoner(load_config([], [*common, "run.name=reasoner", f"vqa.slots={world / 'slots'}", "vqa.epochs=1"]),
                   progress=False)
    assert main(["sweep", "--cluster", "debug", "--name", "preds", *common, "masking.num_masked=0,1"]) == 0
    sweep = tmp_path / "runs" / "preds"
    jobs = {j["overrides"][0]: j["run_dir"] for j in json.loads((sweep / "sweep.json").read_text())["jobs"]}

    study = [*common, "study.name=s", 'study.grid=["masking.num_masked=0,1"]', "study.splits=[val]",
             f"study.reasoner={tmp_path / 'runs' / 'reasoner'}"]
    cfg = load_config([], [*study, f"study.predictors={sweep}"])
    for cell in expand_grid(cfg.study.grid):
        res = run_cell(cfg, cell, progress=False, log=lambda m: None)
        assert res["predictor_run"] == jobs[cell[0]]
        cdir = study_root(cfg) / cell_name(cell)
        assert not (cdir / "predictor").exists(), "the cell trained its own predictor"
        assert json.loads((cdir / "rollout" / "meta.json").read_text())["producer"]["rollout_of"] == jobs[cell[0]]

    other = load_config([], [*study, "study.name=other", "model.depth=2", f"study.predictors={sweep}"])
    with pytest.raises(ConfigError, match=r"no job of that sweep trained cell num_masked0 .*differs at model.depth"):
        run_cell(other, ["masking.num_masked=0"], progress=False, log=lambda m: None)
    (Path(jobs["masking.num_masked=1"]) / "summary.json").unlink()
    fresh = load_config([], [*study, "study.name=fresh", f"study.predictors={sweep}"])
    with pytest.raises(ConfigError, match=r"predictor of cell num_masked1 .* has not finished"):
        run_cell(fresh, ["masking.num_masked=1"], progress=False, log=lambda m: None)
    with pytest.raises(ConfigError, match=r"no sweep.json there"):
        run_cell(load_config([], [*study, "study.name=x", f"study.predictors={tmp_path}"]), ["masking.num_masked=0"],
                 progress=False, log=lambda m: None)
