"""Decontamination measured on TOP phase I: thresholds calibrated on real train-vs-held-out pairs, then
(1) every held-out trial copied (new id, clean provenance) two ways — whole, and its criteria alone under a
train trial's drug and conditions — must be refused; (2) real trials must not be: half of train against
thresholds calibrated on the other half, and the real trials of the other TOP files (phases II and III, the
toy sets) that are not phase I trials, checked against the phase I held-out trials.

    python benchmarks/bench_decontamination.py
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import TOP, print_table  # noqa: E402
from synthtrials.evals.decontamination import TrialFeatures, calibrate, find_contaminated  # noqa: E402
from synthtrials.tools.readers import read_trials  # noqa: E402
from synthtrials.tools.records.fields import field_set  # noqa: E402
from synthtrials.tools.records.trial import Eligibility  # noqa: E402
from synthtrials.tools.store.embeddings import DEFAULT_EMBEDDING_MODEL, get_embeddings  # noqa: E402


def refused(candidates, held, calibration) -> int:
    return len(find_contaminated(candidates, held, calibration, {i: "held out" for i in held.ids})[2])


def main() -> None:
    start = time.perf_counter()
    train = read_trials([TOP / "phase_I_train.csv"])
    held = read_trials([TOP / "phase_I_test.csv"]) + read_trials([TOP / "phase_I_valid.csv"])
    phase_one = {t.nct_id for t in train + held}
    others = [t for f in sorted(TOP.glob("*.csv")) if not f.name.startswith("phase_I_")
              for t in read_trials([f]) if t.nct_id not in phase_one]
    others = list({t.nct_id: t for t in others}.values())
    fields = field_set(train)
    encode = get_embeddings(DEFAULT_EMBEDDING_MODEL).embed_array
    train_f, held_f = TrialFeatures.of(train, fields, encode), TrialFeatures.of(held, fields, encode)
    calibration = calibrate(train_f, held_f, DEFAULT_EMBEDDING_MODEL)
    rng = random.Random(0)
    whole = [t.model_copy(update={"nct_id": f"SYN-W{i:06d}", "brief_title": "A new study"}) for i, t in enumerate(held)]
    donors = [rng.choice(train) for _ in held]
    criteria_only = [d.model_copy(update={"nct_id": f"SYN-C{i:06d}", "eligibility": h.eligibility or Eligibility()})
                     for i, (h, d) in enumerate(zip(held, donors))]
    half = rng.sample(range(len(train)), len(train) // 2)
    first, second = train_f.subset({train[i].nct_id for i in half}), None
    second = train_f.subset({t.nct_id for t in train} - set(first.ids))
    half_calibration = calibrate(first, held_f, DEFAULT_EMBEDDING_MODEL)
    rows = [
        ["held-out trials copied whole (new id)", len(whole), refused(TrialFeatures.of(whole, fields, encode), held_f, calibration)],
        ["held-out criteria under a train trial's drug", len(criteria_only),
         refused(TrialFeatures.of(criteria_only, fields, encode), held_f, calibration)],
        ["real train trials (the calibration's own)", len(train), refused(train_f, held_f, calibration)],
        ["half of train, thresholds from the other half", len(second.ids), refused(second, held_f, half_calibration)],
        ["real trials of the other TOP files (not phase I)", len(others),
         refused(TrialFeatures.of(others, fields, encode), held_f, calibration)],
    ]
    t, r = calibration.thresholds, calibration.real_max
    print_table(f"Decontamination on TOP phase I ({time.perf_counter() - start:.0f} s): thresholds text 13-gram "
                f"{t.text_ngram:.3f}, criteria 13-gram {t.criteria_ngram:.3f}, MiniLM similarity {t.similarity:.3f} "
                f"(real train maxima {r.text_ngram:.3f} / {r.criteria_ngram:.3f} / {r.similarity:.3f}; "
                f"{calibration.train_trials} train against {calibration.held_out_trials} test + valid trials)",
                ["trials checked", "n", "refused"], rows)


if __name__ == "__main__":
    main()
