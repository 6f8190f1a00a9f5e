"""`label_fit` (the LAMBADA recipe): a TF-IDF classifier of the grounding trials, its threshold calibrated out
of fold so that it rejects at most 5% of them, agrees with real trials' labels more often than with flipped ones."""

import pytest
from support import TOP
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.knowledge.label_fit import LabelFit
from synthtrials.tools.readers import read_trials
from synthtrials.tools.records.fields import field_set


def test_threshold_rejects_at_most_five_percent_of_the_grounding_trials_out_of_fold():
    train = read_trials([TOP / "phase_I_train.csv"])[:400]
    test = read_trials([TOP / "phase_I_test.csv"])[:200]
    fit = LabelFit(field_set(train)).fit(train)
    assert fit.n_trials_ == sum(t.label in (0, 1) for t in train)
    assert fit.real_rejection_ <= 0.05 and 0 < fit.threshold_ < 0.5
    true_labels = fit.agrees(test, [t.label for t in test]).mean()
    flipped = fit.agrees(test, [1 - t.label for t in test]).mean()
    assert true_labels > flipped  # the check measures the label, not the text alone
    probability = fit.label_probability(test[:5], [1] * 5)
    assert ((probability >= 0) & (probability <= 1)).all()


def test_too_few_trials_of_a_label_is_one_line():
    train = [t for t in read_trials([TOP / "phase_I_train.csv"]) if t.label == 1][:50]
    with pytest.raises(ConfigError, match="at least 10 grounding trials of each label .*0 failures"):
        LabelFit().fit(train)
