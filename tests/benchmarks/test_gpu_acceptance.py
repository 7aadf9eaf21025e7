"""benchmarks/gpu_acceptance.py: one table of verdicts, JSONL rows with provenance, no crash on a bare machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from benchmarks import gpu_acceptance as acc
from tests.helpers import REPO

ROW_FIELDS = {"benchmark", "stage", "check", "measured", "target", "verdict", "value", "detail", "run_id", "mode",
              "gpu", "driver",
              "torch", "triton", "cuda", "device", "git_sha", "versions", "timestamp"}
# What the GPU machine lacks, blocked the way a missing package fails: `import av` raises ImportError.
BARE = ["av", "webdataset", "deepspeed", "nvidia.dali", "submitit", "flash_attn"]


def _env():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # as on a user's shell
    env["PYTHONPATH"] = str(REPO)
    return env


def _table_rows(stdout: str) -> list[str]:
    """The lines of the verdict table below its header rule."""
    lines = stdout.split("## GPU acceptance")[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-----"))
    return [line for line in lines[start + 1:] if line.strip() and not line.startswith("rows appended")]


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _probe(tmp_path, block: list[str], argv: list[str]) -> subprocess.CompletedProcess:
    """Run main(argv) in a fresh interpreter where the modules of `block` cannot be imported."""
    code = textwrap.dedent(f"""
        import sys
        for name in {block!r}:
            sys.modules[name] = None
        from benchmarks.gpu_acceptance import main
        sys.exit(main({argv!r}))
    """)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_cpu_quick_run_prints_one_table_and_writes_rows_with_provenance(tmp_path):
    """`python -m benchmarks.gpu_acceptance --cpu --quick`: every stage runs, one table, one JSONL row per table row."""
    out = tmp_path / "rows.jsonl"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_acceptance", "--cpu", "--quick", "--out", str(out)],
                          cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("## GPU acceptance") == 1
    header = proc.stdout.split("## GPU acceptance")[1].splitlines()[1].split()
    assert header == ["stage", "check", "measured", "target", "verdict"]
    table_rows = _table_rows(proc.stdout)
    rows = _jsonl(out)
    assert len(rows) == len(table_rows) == 13  # 3 test rows + 2 per benchmark stage, 3 for the predictor step
    assert {r["stage"] for r in rows} == set(acc.STAGES)
    for r in rows:
        assert ROW_FIELDS <= set(r), ROW_FIELDS - set(r)
        assert r["benchmark"] == "gpu_acceptance" and r["mode"] == "cpu"
        assert r["torch"] == torch.__version__ and r["gpu"] is None and len(r["git_sha"]) >= 7
        assert not r["verdict"].startswith(("error", "skipped", "not installed")), r
    assert len({r["run_id"] for r in rows}) == 1
    # targets are GPU statements: on CPU every measured row says so; the kernel parity tests really ran and passed
    by_check = {r["check"]: r for r in rows}
    parity = by_check["kernel parity suite (tests/kernels, every shape tier)"]
    assert parity["verdict"] == "PASS" and parity["detail"]["outcomes"]["passed"] >= 20
    targeted = [r for r in rows if r["target"] not in ("-", "all pass")]
    assert targeted and all(r["verdict"] in ("cpu: no target", "needs --reference-src") for r in targeted)
    assert any(r["verdict"] == "needs --reference-src" for r in rows)  # no --reference-src given
    for line in table_rows:
        assert any(v in line for v in ("cpu: no target", "PASS", "needs --reference-src")), line
    assert out.with_suffix(".log").read_text().count("pytest") >= 1  # the benchmarks' own output went to the log


def test_missing_packages_give_not_installed_rows(tmp_path):
    """On a machine without PyAV/DALI/einops (and the rest of what the GPU machine lacks) the stages that need them
    report 'not installed' and everything else still runs: no crash, exit 0."""
    src = tmp_path / "cjepa_src" / "src"
    src.mkdir(parents=True)
    # as the original
    (src / "cjepa_predictor.py").write_text("import einops\n\nclass MaskedSlotPredictor:\n    pass\n")
    out = tmp_path / "rows.jsonl"
    proc = _probe(tmp_path, BARE + ["einops"], ["--cpu", "--quick", "--only", "decode", "predictor_step",
                                                "--reference-src", str(src.parent), "--out", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {(r["stage"], r["check"].split(": ")[-1]): r for r in _jsonl(out)}
    decode = [r for (stage, _), r in rows.items() if stage == "decode"]
    assert len(decode) == 1 and decode[0]["verdict"] == "not installed: av (PyAV), nvidia-dali"
    step = {check: r["verdict"] for (stage, check), r in rows.items() if stage == "predictor_step"}
    assert step["ours[sdpa] vs original fp32 eager"] == "not installed: einops"
    assert step["ours[sdpa] vs our reference layout fp32 eager"] == "cpu: no target"  # the rest of the stage ran
    assert "not installed: av (PyAV), nvidia-dali" in proc.stdout


@pytest.mark.parametrize("exc, verdict", [(ImportError("no module named 'foo'", name="foo"), "not installed: foo"),
                                          (RuntimeError("boom"), "error: RuntimeError: boom"),
                                          (SystemExit("slots differ"), "error: SystemExit: slots differ")])
def test_a_failing_stage_is_a_row_not_a_crash(tmp_path, monkeypatch, exc, verdict):
    """An exception in a stage (bench scripts raise SystemExit on a provider mismatch) becomes that stage's row."""
    def broken(ctx):
        raise exc

    monkeypatch.setitem(acc.STAGE_FNS, "encoder", broken)
    out = tmp_path / "rows.jsonl"
    code = acc.main(["--cpu", "--quick", "--only", "encoder", "--out", str(out)])
    (row,) = _jsonl(out)
    assert row["verdict"] == verdict
    assert code == (0 if verdict.startswith("not installed") else 1)


def test_stages_that_do_not_fit_the_budget_are_skipped(tmp_path, monkeypatch, capsys):
    """--timeout smaller than every stage's estimate: each stage is reported 'skipped: budget' and never started."""
    started = []
    for name in acc.STAGES:
        monkeypatch.setitem(acc.STAGE_FNS, name, lambda ctx, n=name: started.append(n) or [])
    out = tmp_path / "rows.jsonl"
    code = acc.main(["--cpu", "--quick", "--timeout", "5", "--out", str(out)])
    rows = _jsonl(out)
    assert code == 0 and started == []
    assert [r["stage"] for r in rows] == acc.STAGES and all(r["verdict"] == "skipped: budget" for r in rows)
    assert "skipped: budget" in capsys.readouterr().out


@pytest.mark.parametrize("cpu, counts, code, verdict", [
    (False, {"passed": 13}, 0, "PASS"),
    (False, {"passed": 12, "failed": 1}, 1, "FAIL"),
    (False, {"passed": 3, "skipped": 10}, 0, "FAIL"),  # on a GPU a skipped gpu test is a failure, not a pass
    (False, {}, 5, "FAIL"),  # nothing collected
    (True, {"passed": 3, "skipped": 10}, 0, "cpu: no target"),
    (True, {"passed": 3, "error": 1}, 1, "FAIL"),
])
def test_tests_row_verdicts(cpu, counts, code, verdict):
    per_file = {"tests/kernels/test_realistic_shapes.py": counts, "tests/kernels/test_slot_attention.py": {"failed": 4}}
    row = acc._tests_row(acc.Ctx(cpu=cpu), "realistic", per_file, code, [acc.REALISTIC], True)
    assert row.verdict == verdict
    assert acc._tests_row(acc.Ctx(cpu=cpu), "realistic", None, -1, [acc.REALISTIC], True).verdict == "skipped: budget"


def _gpu(name="NVIDIA H100 80GB HBM3"):
    return acc.Ctx(cpu=False, gpu_name=name)


@pytest.mark.parametrize("ms, verdicts", [({"torch": 2.5, "compile": 1.3, "triton": 1.0}, ["PASS", "PASS"]),
                                          ({"torch": 2.5, "compile": 1.1, "triton": 1.0}, ["PASS", "FAIL"]),
                                          ({"torch": 1.9, "compile": 1.3, "triton": 1.0}, ["FAIL", "PASS"])])
def test_slot_attention_targets(ms, verdicts):
    """Triton >= 2x eager and >= 1.2x compile, each its own row."""
    rows = acc.slot_attention_rows(_gpu(), [{"provider": p, "median_ms": t} for p, t in ms.items()], "sa", {})
    assert [r.verdict for r in rows] == verdicts
    assert rows[0].value == pytest.approx(ms["torch"]) and rows[1].value == pytest.approx(ms["compile"])


def test_slot_attention_without_triton_timing_cannot_pass():
    rows = acc.slot_attention_rows(_gpu(),
                                   [{"provider": "torch", "median_ms": 9.0}, {"provider": "compile", "median_ms": 1.0}],
                                   "sa", {})
    assert [r.verdict for r in rows] == ["FAIL", "FAIL"]


@pytest.mark.parametrize("gpu, step_ms, verdict, measured", [
    ("NVIDIA H100 80GB HBM3", 1.0, "PASS", "40.4% (400 of 989 TFLOP/s)"),
    ("NVIDIA H100 PCIe", 1.0, "PASS", "52.9% (400 of 756 TFLOP/s)"),
    ("NVIDIA H200", 2.0, "FAIL", "20.2% (200 of 989 TFLOP/s)"),
    ("NVIDIA L40S", 1.0, "MFU n/a", "400.0 TFLOP/s on NVIDIA L40S"),
])
def test_mfu_row(gpu, step_ms, verdict, measured):
    row = acc.mfu_row(_gpu(gpu), "mfu", 400e9, step_ms, {})
    assert (row.verdict, row.measured) == (verdict, measured)
    assert acc.mfu_row(acc.Ctx(cpu=True), "mfu", 400e9, step_ms, {}).verdict == "cpu: no target"


def test_decode_row():
    """NVDEC frames/s >= 10x one PyAV worker's; a GPU run without an NVDEC measurement does not pass."""
    assert acc.decode_row(_gpu(), "d", ">= 10x", {"cpu-1": 100.0, "dali-nvdec": 1200.0}).verdict == "PASS"
    assert acc.decode_row(_gpu(), "d", ">= 10x", {"cpu-1": 100.0, "dali-nvdec": 900.0}).verdict == "FAIL"
    assert acc.decode_row(_gpu(), "d", ">= 10x", {"cpu-1": 100.0, "dali-pyav": 2000.0}).verdict == "FAIL"  # not NVDEC
    assert acc.decode_row(acc.Ctx(cpu=True), "d", ">= 10x",
                          {"cpu-1": 100.0, "dali-pyav": 90.0}).verdict == "cpu: no target"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_gpu_mode_without_a_gpu_refuses_to_start(tmp_path, capsys):
    assert acc.main(["--out", str(tmp_path / "rows.jsonl")]) == 2
    assert "--cpu" in capsys.readouterr().err and not (tmp_path / "rows.jsonl").exists()


def test_verdicts():
    gpu, cpu = acc.Ctx(cpu=False), acc.Ctx(cpu=True)
    assert acc.judge(gpu, 2.0, 2.0) == "PASS" and acc.judge(gpu, 1.99, 2.0) == "FAIL"
    assert acc.judge(gpu, None, 2.0) == "FAIL" and acc.judge(gpu, 3.0, None) == "info"
    assert acc.judge(cpu, 0.1, 2.0) == "cpu: no target"


@pytest.mark.parametrize("name, peak",
                         [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H200", 989e12),
                                        ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A100 80GB PCIe", 312e12),
                                        ("NVIDIA H100 SXM5 80GB", 989e12), ("NVIDIA L4", None),
                                        ("NVIDIA GeForce RTX 4090", None)])
def test_peak_bf16_table(name, peak):
    assert acc.peak_bf16_flops(name) == peak


def test_predictor_step_flops_match_torch_flop_counter():
    """The analytic MFU numerator equals torch's FLOP counter on the explicit-math model: the forward exactly, the
    training step (forward + backward) within 1 % (the first projection's input needs no gradient)."""
    from torch.utils.flop_counter import FlopCounterMode

    from cjepa.models.predictor import MaskedSlotPredictor

    B, S, T_h, T_p, D, depth, H, E, M = 3, 5, 3, 4, 24, 2, 4, 8, 40
    model = MaskedSlotPredictor(num_slots=S, slot_dim=D, history_frames=T_h, pred_frames=T_p, depth=depth, heads=H,
                                head_dim=E, mlp_dim=M, dropout=0.0, attention_backend="torch")
    history = torch.randn(B, T_h, S, D)
    masked = torch.zeros(B, S, dtype=torch.bool)
    masked[:, 1] = True
    want = acc.predictor_step_flops(B, S, T_h + T_p, D, depth, H, E, M)
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            model(history, masked)
    assert fwd.get_total_flops() == want / 3
    with FlopCounterMode(display=False) as step:
        model(history, masked).square().mean().backward()
    assert step.get_total_flops() == pytest.approx(want, rel=0.01)


def test_bench_scripts_still_run_as_files_and_the_package_as_a_module():
    """benchmarks/ is a package now: `python benchmarks/bench_x.py` and `python -m benchmarks.gpu_acceptance` both
    start."""
    for cmd in ([sys.executable, "benchmarks/bench_slot_attention.py", "--help"],
                [sys.executable, "benchmarks/bench_predictor.py", "--help"],
                [sys.executable, "-m", "benchmarks.gpu_acceptance", "--help"]):
        proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "usage" in proc.stdout, proc.stderr
