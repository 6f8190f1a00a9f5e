"""`synthtrials data download top`: the public TOP benchmark CSVs (HINT, Fu et al. 2022), hash-checked.

Files land in the destination only when their SHA-256 matches (written atomically); a file that
is already there with the right hash is not downloaded again. Use is limited to non-commercial
research (the benchmark's licence).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from synthtrials.tools.atomic import atomic_open
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.progress import SayFn

TOP_BASE_URL = "https://raw.githubusercontent.com/futianfan/clinical-trial-outcome-prediction/main/data"
#: SHA-256 of the TOP files this project was built and tested with
TOP_FILES: dict[str, str] = {
    "phase_III_valid.csv": "8fc1d2a900e595685dc447dea0a2dd5bb9d500288b1c53166780da789f30cda2",
    "phase_II_valid.csv": "c5905bfc5b646e30321bd8e671d7bd946b8fb1dfe5c30a74bb29fa40e2a711e7",
    "phase_I_test.csv": "85f614499bda8a8190152d99ff2799d06f8919cdd700572cd3f42bd86375d0f7",
    "phase_I_train.csv": "4db18b0f1469f215ed828c814acd6ed18ca3b7b49ae13483252553767f1a057a",
    "phase_I_valid.csv": "a170fca5f42781c98a3bf892bc81a46695c7c88810e4712555d6c68bd1765f44",
    "toy_test.csv": "1b8476cb675d9f40319f99234ae2fc8d9a567177da075528099d9e8d4ec9a326",
    "toy_train.csv": "f5d2d9bf9bf6b77176bae1a6f4296c3e6149a60e4b53c7ced08883559dcb5ee7",
    "toy_valid.csv": "b0bfa186bd1f3aa2fb0d3b05c31aa11fbd5f2dec4986e3a936f865f4efd07eb9",
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_top(dest: Path, base_url: str = TOP_BASE_URL, timeout: float = 60.0,
                 progress: SayFn | None = None) -> list[Path]:
    """Download every TOP file to `dest`, checking hashes; raises `ConfigError` on any mismatch."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for name, expected in TOP_FILES.items():
            target = dest / name
            if target.exists() and sha256_of(target) == expected:
                written.append(target)
                continue
            if progress:
                progress(name)
            url = f"{base_url.rstrip('/')}/{name}"
            try:
                response = client.get(url)
            except httpx.HTTPError as exc:
                raise ConfigError(f"{url}: download failed ({type(exc).__name__})") from None
            if response.status_code != 200:
                raise ConfigError(f"{url}: HTTP {response.status_code}")
            actual = hashlib.sha256(response.content).hexdigest()
            if actual != expected:
                raise ConfigError(f"{url}: SHA-256 {actual[:12]}... does not match the expected {expected[:12]}...; "
                                  "nothing written")
            with atomic_open(target, "wb") as handle:
                handle.write(response.content)
            written.append(target)
    return written
