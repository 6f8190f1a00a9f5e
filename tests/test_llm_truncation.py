"""An answer that hit its token limit is judged by validation, whichever client returned it: the
OpenAI client's parse path raises `LengthFinishReasonError` for a constrained answer (seen with
llama-server), where llama.cpp in process returns the cut text."""

import httpx
import openai
from openai.types.chat import ChatCompletion
from synthtrials.tools.llm.client import truncated_answer


def _cut(content: str | None) -> openai.LengthFinishReasonError:
    completion = ChatCompletion.model_validate({
        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": content}}],
        "usage": {"completion_tokens": 448, "prompt_tokens": 247, "total_tokens": 695}})
    return openai.LengthFinishReasonError(completion=completion)


def test_a_truncated_answer_is_returned_as_its_text():
    assert truncated_answer(_cut('{"brief_title": "A phase 1 stu')).content == '{"brief_title": "A phase 1 stu'
    assert truncated_answer(_cut(None)).content == ""
    # its tokens were spent: they reach the usage totals (summary.json) like any answer's
    from langchain_core.outputs import ChatGeneration, LLMResult
    from synthtrials.tools.llm.usage import UsageCallback

    counted = UsageCallback()
    counted.on_llm_end(LLMResult(generations=[[ChatGeneration(message=truncated_answer(_cut('{"a": 1')))]]))
    assert (counted.usage.calls, counted.usage.prompt_tokens, counted.usage.completion_tokens) == (1, 247, 448)
    assert counted.usage.cached_calls == 0


def test_other_errors_are_not_answers():
    assert truncated_answer(ValueError("no")) is None
    assert truncated_answer(openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1/v1"))) is None


def test_a_cut_constrained_answer_is_closed_after_its_last_whole_list_item():
    from synthtrials.tools.llm.client import close_cut_answer

    cut = '{"phase": "phase 1", "conditions": ["asthma"], "inclusion_criteria": ["Age 18-65", "FEV1 \\"70%\\" or more", "Non-sm'
    assert close_cut_answer(cut) == {"phase": "phase 1", "conditions": ["asthma"],
                                     "inclusion_criteria": ["Age 18-65", 'FEV1 "70%" or more']}
    # cut after a key, or inside an object: back to the last whole item
    assert close_cut_answer('{"a": ["x"], "exclusion_criteria"') == {"a": ["x"]}
    assert close_cut_answer('{"a": [{"name": "d", "type": "drug"}, {"name": "e", "ty') == \
        {"a": [{"name": "d", "type": "drug"}]}
    # nothing whole to keep
    assert close_cut_answer('{"a": [{"name": "d", "type": "dr') is None
    assert close_cut_answer('{"brief_title": "A phase 1 stu') is None
    assert close_cut_answer('["a", "b') is None  # not an object: no answer of ours


def test_parsed_answers_hold_no_half_characters():
    """A lone surrogate escape (half of a character a model cut) is dropped from parsed answers, cut or whole;
    a surrogate pair is one character and stays."""
    from synthtrials.tools.llm.client import close_cut_answer, extract_json

    assert extract_json('{"a": ["x \\ud83d y", "\\ud83d\\ude00"]}') == {"a": ["x  y", "\U0001F600"]}
    assert close_cut_answer('{"a": ["x \\udfff y", "z", "cut') == {"a": ["x  y", "z"]}
