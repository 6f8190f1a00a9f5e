"""Write tools/knowledge/foreign_sentences.txt: fluent English sentences from outside medicine for the
critic's calibration and its `typicality_criterion_language` model (`tools.knowledge.criterion_language`),
taken once from the Python language reference that ships with Python (`pydoc_data.topics`) and kept in the
repository, so that every Python version calibrates on the same sentences.

    python scripts/make_foreign_sentences.py
"""

from __future__ import annotations

import re
from pathlib import Path

TARGET = Path(__file__).parents[1] / "tools" / "knowledge" / "foreign_sentences.txt"


def sentences() -> list[str]:
    """Sentences of 6-22 words of plain letters and punctuation ending with a full stop; none with a
    heading's underline ("Frame objects ------ Frame objects represent ...")."""
    from pydoc_data.topics import topics

    out = set()
    for text in topics.values():
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
            if (6 <= len(sentence.split()) <= 22 and re.fullmatch(r"[A-Za-z ,;'()-]+\.", sentence)
                    and "--" not in sentence):
                out.add(sentence)
    return sorted(out)


if __name__ == "__main__":
    lines = sentences()
    TARGET.write_text("".join(f"{line}\n" for line in lines))
    print(f"{TARGET}: {len(lines)} sentences")
