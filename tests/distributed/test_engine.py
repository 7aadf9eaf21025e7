"""The engine contract: single/DDP and DeepSpeed engines declare every call the trainer makes, and the local
engine's checkpoint calls restore what it saved."""

import torch

from cjepa.config import load_config
from cjepa.distributed.deepspeed import DeepSpeedEngine
from cjepa.distributed.engine import Engine, LocalEngine, build_optimizer
from cjepa.distributed.engine_factory import build_engine
from cjepa.distributed.env import DistEnv
from tests.helpers import SMOKE, missing_members, protocol_members

SET_IN_INIT = ("name", "model", "module")  # per instance: they depend on the wrapped model and the world


def test_the_contract_names_what_the_trainer_calls():
    assert protocol_members(Engine) == [
        "backward", "compile", "eval_context", "load_checkpoint", "lr", "model", "module", "module_state_dict",
        "name", "no_sync", "reads_own_model", "save_extra", "save_extra_all_ranks", "state_dict", "step",
    ]


def test_every_engine_declares_the_whole_contract():
    assert missing_members(LocalEngine, Engine, SET_IN_INIT) == []
    assert missing_members(DeepSpeedEngine, Engine, SET_IN_INIT) == []
    assert (LocalEngine.reads_own_model, DeepSpeedEngine.reads_own_model) == (False, True)


def _engine(tmp_path, seed):
    cfg = load_config([SMOKE], [f"run.out_dir={tmp_path}", "optim.grad_clip=1.0"])
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    return build_engine(model, [{"params": list(model.parameters())}], cfg, DistEnv(), torch.device("cpu"),
                        total_steps=10)


def test_local_engine_checkpoint_round_trip(tmp_path):
    """What module_state_dict() and state_dict() save, load_checkpoint() restores into a fresh engine."""
    a = _engine(tmp_path, 0)
    assert isinstance(a, Engine) and a.name == "single"
    for _ in range(3):
        a.backward(a.model(torch.ones(2, 4)).square().sum())
        a.step()
    b = _engine(tmp_path, 1)
    b.load_checkpoint(tmp_path, a.state_dict(), a.module_state_dict())
    for (k, va), vb in zip(a.module_state_dict().items(), b.module_state_dict().values()):
        assert torch.equal(va, vb), k
    assert b.lr() == a.lr() and b.state_dict()["scheduler"] == a.state_dict()["scheduler"]
    assert torch.equal(b.optimizer.state_dict()["state"][0]["exp_avg"], a.optimizer.state_dict()["state"][0]["exp_avg"])
    with b.eval_context():  # the module is whole: nothing to gather
        b.module(torch.ones(1, 4))


def test_cpu_optimizer_is_torchs_fused_adamw_with_the_same_updates():
    """On a CPU the trainer's AdamW is the fused kernel (one pass, no host read per tensor); its updates are torch's
    per-tensor AdamW's, over param groups with their own learning rates."""
    cfg = load_config([SMOKE], ["optim.weight_decay=0.05"]).optim
    torch.manual_seed(0)
    a, b = torch.nn.Linear(6, 5), torch.nn.Linear(6, 5)
    b.load_state_dict(a.state_dict())

    def groups(m):
        return ({"params": (p for p in [m.weight])}, {"params": [m.bias], "lr": 1e-2})  # a generator, then a list

    fused = build_optimizer(list(groups(a)), cfg)
    plain = torch.optim.AdamW([{"params": [b.weight]}, {"params": [b.bias], "lr": 1e-2}], lr=cfg.lr,
                              betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay, foreach=False)
    assert fused.defaults["fused"] is True and len(fused.param_groups[0]["params"]) == 1
    x = torch.randn(8, 6)
    for _ in range(5):
        for m, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            m(x).pow(2).sum().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a.bias, b.bias, atol=1e-6, rtol=1e-5)
    assert not torch.equal(a.bias, torch.nn.Linear(6, 5).bias)
