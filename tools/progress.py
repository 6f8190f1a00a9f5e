"""The progress callbacks every long stage takes, one signature each kind."""

from __future__ import annotations

from collections.abc import Callable

#: done, total (embedding, scoring, checking, generating...)
ProgressFn = Callable[[int, int], None]
#: a stage's label, done, total (training steps of a classifier, the demo's stages)
StageProgressFn = Callable[[str, int, int], None]
#: a one-line message (what a stage is doing now)
SayFn = Callable[[str], None]
