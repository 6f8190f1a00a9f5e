"""Shape parity: how long real trials are in the writer's answer format, against the adapted writer's answer
budget. An answer cut to the budget loses criteria from the end of its longer list (`fit_answer`), so a budget
below the real lengths makes synthetic trials shorter than real ones whatever the writer learns.

Tokens of each phase_I_train trial's answer (`DraftSpec.answer_of`, the JSON the adapted writer is trained to
write) in SmolLM2's vocabulary; the share that fits each budget whole.

    python benchmarks/bench_answer_budget.py [--budgets 384 544 900 1342]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import TOP, print_table  # noqa: E402
from synthtrials.tools.llm.config import resolve_gguf  # noqa: E402
from synthtrials.tools.readers import read_trials  # noqa: E402
from synthtrials.tools.records.writer_format import DraftSpec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=int, nargs="+", default=[384, 544, 900, 1342])
    args = parser.parse_args()
    from llama_cpp import Llama

    vocabulary = Llama(resolve_gguf("smollm2"), vocab_only=True, verbose=False)
    train = read_trials([TOP / "phase_I_train.csv"])
    spec = DraftSpec.from_trials(train)
    answers = [a for a in map(spec.answer_of, train) if a is not None]
    tokens = np.array([len(vocabulary.tokenize(json.dumps(a, ensure_ascii=False).encode(), add_bos=False))
                       for a in answers])
    criteria = np.array([len(a.get("inclusion_criteria", [])) + len(a.get("exclusion_criteria", [])) for a in answers])
    print_table(f"Answer tokens of {len(answers)} phase_I_train trials (SmolLM2 vocabulary): median "
                f"{np.median(tokens):.0f}, 75th percentile {np.percentile(tokens, 75):.0f}, 95th "
                f"{np.percentile(tokens, 95):.0f}; criteria per trial: median {np.median(criteria):.0f}",
                ["answer budget (tokens)", "trials that fit whole", "median criteria of those that fit"],
                [[b, f"{(tokens <= b).mean():.1%}", f"{np.median(criteria[tokens <= b]):.0f}" if (tokens <= b).any() else "-"]
                 for b in args.budgets])


if __name__ == "__main__":
    main()
