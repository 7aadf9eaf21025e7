"""The reasoner's training task (cjepa.tasks.vqa) through the generic trainer: the vqa section maps onto the
trainer's, missing videos are an error unless skipped, resume is bit-identical, `train.task=vqa` selects it,
and the oracle protocol reads the simulator's reruns."""

import json

import numpy as np
import pytest
import torch

from cjepa.config import ConfigError, load_config
from cjepa.eval.vqa.reasoner import train_reasoner
from cjepa.tasks.vqa import VQATask, trainer_config
from cjepa.trainer import Trainer
from cjepa.utils.checkpoint import latest_checkpoint, load_model_state
from tests.eval.vqa.synthetic import colour_overrides, make_colour_world


def test_trainer_config_maps_the_vqa_section():
    cfg = load_config([], ["vqa.lr=2e-3", "vqa.batch_size=12", "vqa.epochs=3", "vqa.min_lr_ratio=0.01"])
    t = trainer_config(cfg)
    assert (t.optim.lr, t.optim.weight_decay, t.optim.schedule, t.optim.min_lr_ratio) == (2e-3, 0.0, "cosine", 0.01)
    assert (t.data.batch_size, t.train.epochs) == (12, 3)
    assert cfg.optim.lr == 5e-4  # the predictor's settings are untouched


def test_missing_videos_are_an_error_unless_skipped(tmp_path):
    paths = make_colour_world(tmp_path, {"train": 20, "val": 4})
    q = json.loads(open(paths["val"]).read())
    q[0]["video_filename"], q[0]["scene_index"] = "video_99999.mp4", 99999
    open(paths["val"], "w").write(json.dumps(q))
    cfg = load_config([], colour_overrides(tmp_path, paths, "vqa.epochs=1"))
    with pytest.raises(ConfigError, match="2 questions .* have no slot video"):
        train_reasoner(cfg, progress=False)
    cfg = load_config([],
                      colour_overrides(tmp_path, paths, "vqa.epochs=1", "vqa.skip_missing_videos=true",
                                       "run.name=skip"))
    fe = train_reasoner(cfg, progress=False)["final_eval"]
    assert fe["data"]["val"]["dropped_missing_video"] == 2 and fe["metrics"]["descriptive_questions"] == 3


class Interrupt(Exception):
    pass


class CrashAt(VQATask):
    def __init__(self, cfg, step):
        super().__init__(cfg, progress=False)
        self.at = step

    def training_losses(self, model, batch, step, micro_index):
        if step == self.at:
            raise Interrupt()
        return super().training_losses(model, batch, step, micro_index)


@pytest.mark.slow
@pytest.mark.parametrize("slot_loss_weight", ["0.0", "1.0"])
def test_resume_is_bit_identical_to_uninterrupted(tmp_path, slot_loss_weight):
    """Crash mid-epoch (step 5, last checkpoint at 3), resume: the weights equal an uninterrupted run's
    (random start offsets, dropout and data order all restored; with masked-slot prediction, the hidden slots)."""
    paths = make_colour_world(tmp_path, {"train": 24, "val": 4})
    extra = ("vqa.epochs=2", "vqa.batch_size=6", "vqa.dropout=0.1", "train.ckpt_every=3", "vqa.eval_every_epochs=2",
             "vqa.eval_offsets=[0]", f"vqa.slot_loss_weight={slot_loss_weight}")
    full = load_config([], colour_overrides(tmp_path, paths, "run.name=full", *extra))
    train_reasoner(full, progress=False)
    part = load_config([], colour_overrides(tmp_path, paths, "run.name=part", *extra))
    tcfg = trainer_config(part)
    with pytest.raises(Interrupt):
        Trainer(tcfg, CrashAt(tcfg, 5), progress=False).fit()
    assert latest_checkpoint(tmp_path / "runs" / "part").name == "step_0000003"
    train_reasoner(part, progress=False)
    a, b = load_model_state(tmp_path / "runs" / "full"), load_model_state(tmp_path / "runs" / "part")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    slots = slot_loss_weight != "0.0"
    assert ("slot_prediction_head.weight" in a) == slots
    logged = [json.loads(line) for line in (tmp_path / "runs" / "full" / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss_slots" in r for r in logged) == slots


def test_generic_train_entry_point_trains_the_reasoner(tmp_path):
    """`train.task=vqa` through cjepa.trainer.train (what `cjepa train` and the SLURM launchers call) runs this task
    with the vqa.* optimiser settings."""
    from cjepa.trainer import train

    paths = make_colour_world(tmp_path, {"train": 12, "val": 3})
    cfg = load_config([],
                      colour_overrides(tmp_path, paths, "train.task=vqa", "vqa.epochs=1", "vqa.batch_size=6",
                                       "run.name=generic"))
    summary = train(cfg, progress=False)
    saved = (tmp_path / "runs" / "generic" / "config.yaml").read_text()
    assert summary["steps"] == 4 and "lr: 0.003" in saved  # 24 questions, batches of 6 and "weight_decay: 0.0" in saved
    assert summary["final_eval"]["protocol"] == "original"


def _oracle_config(world, *extra):
    return load_config([], [
        "vqa.protocol=oracle", "vqa.frame_sampling=span", "vqa.video_len=24", "vqa.num_frames=6",
        f"vqa.slots={world}/oracle/slots", f"vqa.cf_slots={world}/oracle/counterfactual",
        f"vqa.annotations={world}/annotations.json",
        f"vqa.questions_train={world}/questions/train.json", f"vqa.questions_val={world}/questions/val.json", *extra,
    ])


def test_oracle_protocol_reads_the_simulators_future_and_reruns(tmp_path):
    from cjepa.data.billiards_vqa import write_billiards_vqa
    from cjepa.eval.vqa.questions import COUNTERFACTUAL, PREDICTIVE, iter_answers, iter_texts, load_question_file
    from cjepa.eval.vqa.text import Vocab
    from cjepa.tasks.vqa import build_split

    world = tmp_path / "w"
    write_billiards_vqa(world, {"train": 4, "val": 3}, num_slots=7, slot_dim=8, observed_frames=24, total_frames=32,
                        oracle=True)
    cfg = _oracle_config(world)
    scenes = load_question_file(cfg.vqa.questions_val)
    vocab = Vocab.build(iter_texts(scenes), iter_answers(scenes))
    ds, info = build_split(cfg, "val", cfg.vqa.questions_val, vocab)
    assert info["cf_questions"] > 0 and info["cf_from_rollout"] == info["cf_questions"] and ds.num_starts == 1
    for q in range(len(ds)):
        item = ds[(q, 0)]
        if ds.qs.qtype[q] == PREDICTIVE:  # the last observed frame and the simulated future, to its last frame
            np.testing.assert_array_equal(item["video"][-1], np.asarray(ds.videos[ds.video_keys[q]][31]))
        if ds.qs.qtype[q] == COUNTERFACTUAL:  # the re-run without the removed object, its slot ignored
            assert item["slot_pad"].any(axis=0).sum() == 1 and item["slot_pad"].all(axis=0).sum() == 1
    # a counterfactual question the world has no re-run for is an error, never a silent fallback
    scenes[0]["questions"] = [
        {**q, "question": "Which of the following will happen if the pink object is removed?"}
        if q["question_type"] == "counterfactual"
        else q
        for q in scenes[0]["questions"]
    ]
    bad = tmp_path / "val.json"
    bad.write_text(json.dumps(scenes))
    with pytest.raises(ConfigError,
                       match=r"protocol=oracle: \d+ of \d+ counterfactual questions of split 'val' have no re-run"):
        build_split(_oracle_config(world, f"vqa.questions_val={bad}"), "val", str(bad), vocab)


def test_reasoner_reaches_the_ceiling_on_a_small_oracle_question_set(tmp_path):
    """The harness end to end under vqa.protocol=oracle: predictive questions must read the simulated future and
    counterfactual ones the re-run without the removed object (tests.eval.vqa.synthetic.make_oracle_world), or
    the reasoner stays at the prior of 2/3 per option."""
    from tests.eval.vqa.synthetic import make_oracle_world

    paths = make_oracle_world(tmp_path, {"train": 160, "val": 40})
    cfg = load_config([], [
        f"run.out_dir={tmp_path / 'runs'}", "run.name=oracle", "run.device=cpu", "run.seed=0",
        f"vqa.questions_train={paths['train']}", f"vqa.questions_val={paths['val']}",
        f"vqa.annotations={paths['annotations']}",
        f"vqa.slots={paths['slots']}", f"vqa.cf_slots={paths['cf_slots']}", "vqa.protocol=oracle",
        "vqa.frame_sampling=span",
        "vqa.video_len=12", "vqa.num_frames=4", "vqa.cf_frames=12", "vqa.question_len=12", "vqa.choice_len=4",
        "vqa.word_dim=4", "vqa.heads=2", "vqa.depth=2", "vqa.ffn_dim=32", "vqa.head_hidden=16", "vqa.dropout=0.0",
        "vqa.lr=3e-3", "vqa.batch_size=16", "vqa.epochs=30", "vqa.eval_every_epochs=30", "vqa.val_batch_size=64",
        "train.log_every=50", "train.ckpt_every=100000",
    ])
    m = train_reasoner(cfg, progress=False)["final_eval"]["metrics"]
    assert m["predictive_questions"] == 40 and m["counterfactual_questions"] == 40
    assert m["predictive_per_option"] >= 0.9 and m["counterfactual_per_option"] >= 0.9, m


def test_a_checkpoint_rebuilds_the_reasoner_from_every_setting_that_shapes_it():
    """Every vqa.* key reasoner_from_config reads is read back from a checkpoint (REASONER_CHECKPOINT_KEYS): a new
    reasoner option that is not would rebuild a trained reasoner as another model."""
    from cjepa.eval.vqa.text import Vocab
    from cjepa.tasks.vqa import REASONER_CHECKPOINT_KEYS, reasoner_from_config

    class Reads:
        def __init__(self, section):
            self._section, self.keys = section, set()

        def __getattr__(self, key):
            self.keys.add(key)
            return getattr(self._section, key)

    cfg = load_config([], [])
    reads = Reads(cfg.vqa)
    cfg.vqa = reads
    vocab = Vocab.from_dict({"q_vocab": {"PAD": 0, "a": 1}, "a_vocab": {"PAD": 0, "yes": 1}}, "test")
    reasoner_from_config(cfg, vocab, num_slots=3, slot_dim=4)
    assert reads.keys and reads.keys <= set(REASONER_CHECKPOINT_KEYS), reads.keys - set(REASONER_CHECKPOINT_KEYS)
