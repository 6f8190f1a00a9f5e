"""Splits of real trials: which trials may ground generation, and which are held out.

Every real trial in a store has one split: ``train``, ``valid``, ``test`` or ``pool``. It comes
from the name of the file the trial was read from (``*_train*``, ``*_valid*``, ``*_test*``;
anything else is ``pool``) or from ``ingest --split``. A trial listed in several files keeps the
strictest split it was ever given (test > valid > train > pool), whatever the order of
ingestion: a held-out trial can never be downgraded into a grounding split by a later ingest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from synthtrials.tools.errors import ConfigError

Split = Literal["pool", "train", "valid", "test"]
#: from least to most strict
SPLITS: tuple[Split, ...] = ("pool", "train", "valid", "test")
HELD_OUT: tuple[Split, ...] = ("valid", "test")
#: the splits generation grounds on by default (train when a store has one, else pool)
GROUNDING_CANDIDATES: tuple[Split, ...] = ("train", "pool")
_RANK = {name: rank for rank, name in enumerate(SPLITS)}
_FROM_NAME = re.compile(r"_(train|valid|test)", re.IGNORECASE)


def check_split(name: str) -> Split:
    """`name` if it is a split, else a one-line `ConfigError`."""
    value = name.strip().lower()
    if value not in _RANK:
        raise ConfigError(f"unknown split {name!r} (choose from {', '.join(SPLITS)})")
    return value  # type: ignore[return-value]


def split_from_source_name(source: str | Path) -> Split:
    """The split a file name implies: ``phase_I_test.csv`` -> test, ``studies.json`` -> pool."""
    name = Path(str(source).split("!", 1)[0]).name
    match = _FROM_NAME.search(name)
    return match.group(1).lower() if match else "pool"  # type: ignore[return-value]


def strictest(splits: Iterable[str]) -> Split:
    """The strictest of the given splits (``pool`` when there is none)."""
    return max((check_split(s) for s in splits), key=_RANK.__getitem__, default="pool")


def is_stricter(new: str, old: str) -> bool:
    return _RANK[check_split(new)] > _RANK[check_split(old)]
