"""The reasoning agent: evidence from the grounding trials only, templated reasons that are valid for
every eligible TOP phase I drug, and an LLM's junk reasons rejected, asked for again once, then
dropped (a scripted server stands in for the model here: this tests our control flow, not the
quality of any model's reasons)."""

import json

from fake_openai import FakeOpenAIServer
from langgraph.runtime import Runtime
from support import TOP
from synthtrials.agents.reasoner import make_reason_node, reason_problems
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.context import RunContext
from synthtrials.graphs.resolve import settle_generation, settle_reasoner
from synthtrials.graphs.resources import Resources
from synthtrials.graphs.state import GenerationState, Target
from synthtrials.tools.knowledge.checks import CriticThresholds
from synthtrials.tools.records.eligibility import eligible_trials
from synthtrials.tools.knowledge.evidence import (
    OUTCOME_PATTERN,
    REASON_VALIDATOR_VERSION,
    drug_evidence,
    evidence_reasons,
)
from synthtrials.tools.llm.client import LLMClient, LLMConfig
from synthtrials.tools.records.normalize import normalize_intervention
from synthtrials.tools.readers import read_trials
from synthtrials.tools.store.protocol import grounding_filter
from synthtrials.tools.store.trial_store import open_store


def test_evidence_comes_from_the_grounding_trials_only(phase1_store_path):
    store = open_store(phase1_store_path, create=False)
    test_ids = set(store.filter_ids(grounding_filter(["test"])))
    drug = next(d for t in store.filter(grounding_filter(["test"])) for d in [normalize_intervention(t.interventions[0].name)]
                if store.filter_ids(grounding_filter(["train"]).narrowed(intervention=d)))
    grounding = store.filter(grounding_filter(["train"]).narrowed(intervention=drug))
    evidence = drug_evidence(grounding, drug, 0)
    assert sum(evidence.trials.values()) == len(grounding) and not {t.nct_id for t in grounding} & test_ids
    stopped = [t.why_stopped for t in grounding if t.label == 0 and t.why_stopped]
    assert evidence.why_stopped == stopped[:5]
    left_out = drug_evidence(grounding, drug, 0, exclude=grounding[0].nct_id)
    assert sum(left_out.trials.values()) == len(grounding) - 1  # a trial's own facts never explain it
    store.close()


def test_evidence_reasons_are_valid_sentences_for_every_eligible_phase_one_drug(phase1_knowledge):
    trials = read_trials([TOP / "phase_I_train.csv"])
    drugs = [e.intervention for e in eligible_trials(trials, 3)]
    store, knowledge, calibration = phase1_knowledge  # the critic's knowledge of the train split, calibrated
    threshold = calibration.thresholds["typicality_criterion"]
    checked = 0
    for drug in drugs:
        of_drug = [t for t in trials if drug in {normalize_intervention(i.name) for i in t.interventions}]
        for label in (0, 1):
            evidence = drug_evidence(of_drug, drug, label)
            reasons = evidence_reasons(evidence, 5)
            assert len(reasons) >= 2, drug
            assert reason_problems(reasons, evidence, knowledge, store.embeddings.embed_array, threshold) == [None] * len(reasons)
            assert not any(OUTCOME_PATTERN.search(r) for r in reasons)  # design considerations, never outcomes
            checked += 1
    assert checked == 2 * len(drugs) and len(drugs) >= 10


#: reasons the embedded SmolLM2 wrote in benchmarks/bench_reasoner.py that the first validator passed
#: (picked at random; benchmarks/RESULTS.md, "The reasoning agent")
SMOLLM2_JUNK = [
    ("fondaparinux", "The new trial was successful. The results are in."),
    ("alemtuzumab", "no data available for this trial."),
    ("bortezomib", "4.8, 2023: bortzemiabond trial stopped due to failure of drug in phase 1 and 2 trials."),
    ("pemetrexed", "The current trial consists of two phases. The first phase includes three phases and the second "
                   "phase includes four phases."),
    ("fondaparinux", "2019-20, 36.4% of the total population is infected with a COVID-19 vaccine."),
    ("fondaparinux", "2019-04-28T17:36:55ZMX_AJB_Fondaparinux_2019-04-28T17:36:55ZMX_AJB_Fondaparinus_2019-04-28T17"),
    ("sorafenib tosylate", "3.4, 2019: Lutetia (Lutetia), a new biolabe that uses DNA to create cells; this is the "
                           "first of its kind in history and it's also one of the most innovative ever."),
]


def test_junk_that_reads_like_sentences_is_rejected_and_a_real_consideration_kept(phase1_knowledge):
    store, knowledge, calibration = phase1_knowledge
    threshold = calibration.thresholds["typicality_criterion"]

    def problems(drug, reason):
        evidence = drug_evidence(store.filter(grounding_filter(["train"]).narrowed(intervention=drug)), drug, 1)
        assert sum(evidence.trials.values()) > 0, drug
        return reason_problems([reason], evidence, knowledge, store.embeddings.embed_array, threshold)[0]

    verdicts = {reason: problems(drug, reason) for drug, reason in SMOLLM2_JUNK}
    assert all(verdicts.values()), [r for r, p in verdicts.items() if p is None]
    assert "states an outcome" in verdicts[SMOLLM2_JUNK[0][1]] and "states an outcome" in verdicts[SMOLLM2_JUNK[2][1]]
    assert "is not a sentence" in verdicts[SMOLLM2_JUNK[5][1]]
    assert problems("lenalidomide", "Enroll adults with relapsed multiple myeloma after two prior lines of therapy.") is None


def test_junk_reasons_are_rejected_asked_again_then_dropped(phase1_store_path):
    answers = iter([json.dumps({"reasons": ["...", "1.2.3", "4.0.5", "6.8.9", "7.2.11"]}),
                    json.dumps({"reasons": ["...", "Enroll adults with relapsed multiple myeloma after two prior "
                                            "lines of therapy.", "x", "y", "z"]})])
    requests = []

    def responder(payload):
        requests.append(payload["messages"][-1]["content"])
        return next(answers)

    store = open_store(phase1_store_path, create=False)
    with FakeOpenAIServer(responder=responder) as server:
        llm = LLMClient(LLMConfig(backend="openai", model="scripted", base_url=server.base_url, max_retries=0))
        resources = Resources(store=store, llm=llm)
        config = GenerationConfig(reasoner="llm", n_reasons=5, ground_on=["train"], llm_critic="off",
                                  llm=llm.config).model_copy(update={"thresholds": CriticThresholds(
                                      calibrated={"typicality_criterion": 0.37})})
        settled = settle_generation(config, store, llm=lambda: llm)
        drug = "lenalidomide"
        update = make_reason_node(resources)(GenerationState(target=Target(index=0, intervention=drug, label=1)),
                                             Runtime(context=RunContext(generation=settled)))
    assert len(requests) == 2 and "not usable" in requests[1] and "'1.2.3' is not a sentence" in requests[1]
    assert update["reasons"] == ["Enroll adults with relapsed multiple myeloma after two prior lines of therapy."]
    assert update["reasons_source"] == "llm" and update["log"][0].wrote["valid"] == 1
    store.close()


def test_auto_reasoner_measures_once_per_validator_version(phase1_store_path):
    """`--reasoner auto` measures the model's reason validity on a few draws, saves it with the store,
    reuses it, and measures again where the saved figure came from older validator rules."""
    requests = []

    def responder(payload):
        requests.append(payload["messages"][-1]["content"])
        return json.dumps({"reasons": ["...", "1.2.3", "4.0.5", "6.8.9", "7.2.11"]})

    store = open_store(phase1_store_path, create=False)
    with FakeOpenAIServer(responder=responder) as server:
        llm = LLMClient(LLMConfig(backend="openai", model="auto-reasoner-test", base_url=server.base_url, max_retries=0))
        config = GenerationConfig(reasoner="auto", n_reasons=5, ground_on=["train"], llm_critic="off",
                                  llm=llm.config).model_copy(update={"thresholds": CriticThresholds(
                                      calibration="test-calibration", calibrated={"typicality_criterion": 0.37})})
        key = f"reasons:test-calibration:{llm.config.model_label()}"
        assert settle_reasoner(config, store, lambda: llm) == "evidence"
        measured = len(requests)
        saved = store.load_calibration(key)
        assert measured >= 2 and saved["validity"] == 0.0 and saved["validator"] == REASON_VALIDATOR_VERSION
        assert settle_reasoner(config, store, lambda: llm) == "evidence" and len(requests) == measured  # reused
        store.save_calibration(key, {"validity": 0.9, "threshold": 0.5})  # saved under the first validator's rules
        assert settle_reasoner(config, store, lambda: llm) == "evidence" and len(requests) == 2 * measured
        assert store.load_calibration(key)["validator"] == REASON_VALIDATOR_VERSION
    store.close()


def test_an_anchored_targets_reasons_and_feedback_never_show_its_anchor(phase1_store_path, phase1_knowledge):
    """The anchor is never shown to the writer: not through the evidence the reasons quote (its criteria would be
    its drug's typical ones where it is the drug's only trial of its label), nor through the real criteria the
    critic's feedback shows. The same target without an anchor quotes it: the exclusion is what keeps it out."""
    from synthtrials.agents.critic import feedback
    from synthtrials.tools.knowledge.checks import Problem
    from synthtrials.tools.records.eligibility import first_drug

    store = phase1_knowledge[0]
    trials = store.filter(grounding_filter(["train"]))
    by_drug_label: dict = {}
    for t in trials:
        if first_drug(t) and t.label in (0, 1) and t.eligibility and t.eligibility.inclusion:
            by_drug_label.setdefault((first_drug(t), int(t.label)), []).append(t)
    config = GenerationConfig(reasoner="evidence", ground_on=["train"], llm_critic="off")
    settled = settle_generation(config.model_copy(update={"thresholds": CriticThresholds(
        calibration="test", calibrated={"typicality_criterion": 0.37})}), store)
    resources = Resources(store=store, llm=None)  # type: ignore[arg-type]  # evidence reasons call no model
    node = make_reason_node(resources)
    quoted_without_exclusion = 0
    for (drug, label), group in sorted(by_drug_label.items(), key=lambda kv: kv[0]):
        if len(group) != 1:
            continue
        anchor = group[0]
        own = [c[:60] for c in anchor.eligibility.inclusion + anchor.eligibility.exclusion]

        def reasons(anchor_id):
            target = Target(index=0, intervention=drug, label=label, anchor=anchor_id,
                            conditions=anchor.conditions if anchor_id else [])
            update = node(GenerationState(target=target), Runtime(context=RunContext(generation=settled)))
            return " ".join(update["reasons"])

        quoted_without_exclusion += any(c in reasons(None) for c in own)
        assert not any(c in reasons(anchor.nct_id) for c in own), (drug, anchor.nct_id)
        if quoted_without_exclusion >= 3:
            break
    assert quoted_without_exclusion >= 3  # the case the exclusion guards against occurs in the real data

    # feedback: the real criteria shown for the anchor's own conditions come from other trials; without the
    # exclusion they are often the anchor's own (its conditions are the nearest to themselves)
    knowledge = phase1_knowledge[1]
    index = knowledge.index["criterion"]
    owners = {text: owner for text, owner in zip(index.texts, index.owners)}
    only_the_anchors = 0
    for anchor in [t for t in trials if t.eligibility and t.eligibility.inclusion and t.conditions][:40]:
        shown = knowledge.real_examples("criterion", anchor.conditions, exclude=anchor.nct_id)
        assert shown and all(owners[text] - {anchor.nct_id} for text in shown), anchor.nct_id
        only_the_anchors += any(owners[text] == {anchor.nct_id}
                                for text in knowledge.real_examples("criterion", anchor.conditions))
    assert only_the_anchors >= 3
    draft = anchor.model_copy(update={"nct_id": "SYN-test"})
    problem = Problem("eligibility_fit", "the criteria do not fit", draft.eligibility.inclusion[0])
    told = feedback([problem], knowledge, draft, anchor.nct_id)[0]
    assert told.endswith(" | ".join(f"'{r[:120]}'" for r in shown))
