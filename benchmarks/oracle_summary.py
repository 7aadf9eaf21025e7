"""Table of the oracle diagnosis records (benchmarks/oracle_diagnosis.py output), for the report.

python benchmarks/oracle_summary.py benchmarks/results/oracle/oracle_runs.jsonl benchmarks/results/oracle/solve.jsonl
"""

from __future__ import annotations

import json
import sys


def _arg(argv: list[str], flag: str, default: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv else default


def main(paths: list[str]) -> int:
    for path in paths:
        for line in open(path):
            r = json.loads(line)
            if r["kind"] not in ("oracle", "solve"):
                continue
            argv = r["argv"]
            data = _arg(argv, "--dataset", "?").rstrip("/").split("/")[-2:][0]  # <root>/slots -> <root>
            cfg = (f"{data} cost={r['cost']} proprio_w={r.get('proprio_weight')} samples={r['samples']} "
                   f"iters={r['iterations']} var={_arg(argv, '--var-scale', '1.0')}")
            if r.get("embedding_cycles"):
                cfg += f" cycles={r['embedding_cycles']}"
            if r["kind"] == "oracle":
                rows = r["per_episode"]
                print(f"oracle  {cfg}: {sum(x['success'] for x in rows)}/{len(rows)} solved "
                      f"({r['success_rate']:.0f} %){' PARTIAL' if r.get('partial') else ''}; {r['categories']} "
                      f"[{r['git_sha'][:7]}]")
            elif r["kind"] == "solve":
                rows = r["per_episode"]
                gap = [x["plan_model_cost"] - x["expert_model_cost"] for x in rows]
                print(f"solve   {cfg}: first plan at the goal after 25 steps {r['plan_success_at_end']}/{len(rows)}; "
                      f"plan cost - expert-actions cost: {', '.join(f'{g:.4f}' for g in gap)} [{r['git_sha'][:7]}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
