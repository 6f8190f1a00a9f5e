"""Shape parity and what an anchored run keeps of its anchors, for a finished run.

Criteria per trial, words per trial and words per criterion of the run's accepted trials against
phase_I_train (`evals.fidelity.shape_comparison`, two-sample Kolmogorov-Smirnov), and per trial whether
its first drug, its conditions and its interventions are its provenance anchor's, how many list more than
one intervention (against their anchors), and how many name an intervention that no trial of the store
names (an invented drug: `normalize_intervention` of every name against the store's).

    python benchmarks/bench_shape.py --run RUN_DIR --store STORE
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import TOP, print_table  # noqa: E402
from synthtrials.evals.data import load_synthetic  # noqa: E402
from synthtrials.evals.fidelity import shape_comparison  # noqa: E402
from synthtrials.tools.readers import read_trials  # noqa: E402
from synthtrials.tools.records.eligibility import first_drug  # noqa: E402
from synthtrials.tools.records.fields import field_set  # noqa: E402
from synthtrials.tools.records.normalize import normalize_intervention  # noqa: E402
from synthtrials.tools.records.provenance import SyntheticProvenance  # noqa: E402
from synthtrials.tools.store.trial_store import open_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    args = parser.parse_args()
    synthetic = load_synthetic(args.run)
    real = read_trials([TOP / "phase_I_train.csv"])
    shape = shape_comparison(real, synthetic, field_set(synthetic))  # like for like: the fields the writer writes
    print_table(f"Shape: {len(synthetic)} trials of {args.run} against {len(real)} phase_I_train trials",
                ["measure", "real median", "synthetic median", "ratio", "KS statistic", "KS p"],
                [[name, f"{test.real_median:g}", f"{test.synthetic_median:g}", f"{test.median_ratio:.2f}",
                  f"{test.ks_statistic:.2f}", f"{test.ks_pvalue:.1e}"]
                 for name, test in shape])
    store = open_store(args.store, create=False)
    pairs = [(t, store.get(p.anchor)) for t in synthetic
             if (p := SyntheticProvenance.of(t)) is not None and p.anchor]
    named = {key.normalized for _, keys in store.intervention_rows() for key in keys}
    store.close()

    def names(trial):
        return sorted(normalize_intervention(i.name) for i in trial.interventions)

    added = [n for t, a in pairs for n in names(t) if n not in names(a)]
    rows = [["first drug is the anchor's", sum(first_drug(t) == first_drug(a) for t, a in pairs)],
            ["conditions are the anchor's", sum(sorted(map(str.lower, t.conditions)) == sorted(map(str.lower, a.conditions))
                                                for t, a in pairs)],
            ["more than one intervention (synthetic)", sum(len(t.interventions) > 1 for t, _ in pairs)],
            ["more than one intervention (their anchors)", sum(len(a.interventions) > 1 for _, a in pairs)],
            ["interventions are the anchor's (names, in any order)", sum(names(t) == names(a) for t, a in pairs)],
            ["an intervention that no trial of the store names", sum(any(n not in named for n in names(t)) for t, _ in pairs)],
            ["interventions the anchor lacks: in all", len(added)],
            ["interventions the anchor lacks: named by no trial of the store", sum(n not in named for n in added)]]
    print_table(f"What {len(pairs)} anchored trials keep of their anchors", ["trials", "n"], rows)


if __name__ == "__main__":
    main()
