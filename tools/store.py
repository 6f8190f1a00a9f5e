"""TrialStore: full `Trial`s plus their embeddings, searched by the retriever agent.

Two backends behind one surface:

- `LocalTrialStore` (default): one folder holding a SQLite file (trials, normalised intervention
  and condition names, embeddings) — every upsert is one transaction, so a failed ingest leaves
  the store as it was — a `NumpyVectorStore` (a LangChain vector store) loaded from it, and a
  BM25 index beside it.
- `WeaviateTrialStore` (`synthtrials.tools.weaviate_store`): a Weaviate server, cluster or cloud
  through weaviate-client v4, with hybrid BM25 + vector search and filters.

`open_store("runs/store")` opens a local store; `open_store("http://host:8080")` a Weaviate one.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel

from synthtrials.tools.atomic import atomic_open
from synthtrials.tools.bm25 import BM25Index
from synthtrials.tools.embeddings import DEFAULT_EMBEDDING_MODEL, get_embeddings
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.normalize import normalize_condition, normalize_intervention, parse_phase
from synthtrials.tools.trial import InterventionType, Phase, Trial, render_for_classifier, render_for_embedding
from synthtrials.tools.vectorstore import NumpyVectorStore

EligibilityRule = Literal["first", "any"]
NameKey = Literal["normalized", "lowercase"]
SearchMode = Literal["semantic", "bm25", "hybrid"]
ProgressFn = Callable[[int, int], None]

#: intervention types that count as drugs for the paper's selection rule
DRUG_TYPES = (InterventionType.DRUG.value, InterventionType.BIOLOGICAL.value)


@dataclass(frozen=True)
class TrialFilter:
    """Filters every backend understands. Names are normalised before matching."""

    intervention: str | None = None
    label: int | None = None
    phase: Phase | str | None = None
    condition: str | None = None
    source: Literal["real", "synthetic"] | None = None
    exclude_ids: frozenset[str] = frozenset()

    def normalised(self) -> TrialFilter:
        phase = parse_phase(self.phase) if isinstance(self.phase, str) else self.phase
        return TrialFilter(
            intervention=normalize_intervention(self.intervention) if self.intervention else None,
            label=self.label,
            phase=phase,
            condition=normalize_condition(self.condition) if self.condition else None,
            source=self.source,
            exclude_ids=self.exclude_ids,
        )


class EligibleIntervention(BaseModel):
    """An intervention with enough successful and failed trials to draw examples from."""

    intervention: str
    successes: int
    failures: int


class SearchHit(BaseModel):
    trial: Trial
    score: float


@dataclass
class UpsertReport:
    inserted: int = 0
    updated: int = 0
    embedded: int = 0
    ids: list[str] = field(default_factory=list)


class TrialStore(Protocol):
    """The TrialStore surface every backend has (what the retriever and the CLI rely on).

    Open one with `open_store(location)`: `LocalTrialStore` or `WeaviateTrialStore`.
    """

    def upsert(self, trials: Sequence[Trial], progress: ProgressFn | None = None,
               vectors: np.ndarray | None = None) -> UpsertReport: ...
    def get(self, nct_id: str) -> Trial | None: ...
    def count(self) -> int: ...
    def filter(self, flt: TrialFilter | None = None, limit: int | None = None) -> list[Trial]: ...
    def filter_ids(self, flt: TrialFilter | None = None) -> list[str]: ...
    def search(self, query: str, k: int = 5, flt: TrialFilter | None = None,
               mode: SearchMode = "semantic") -> list[SearchHit]: ...
    def search_by_vector(self, vector: Sequence[float], k: int = 5,
                         flt: TrialFilter | None = None) -> list[SearchHit]: ...
    def intervention_label_counts(self, rule: EligibilityRule = "first",
                                  names: NameKey = "normalized") -> dict[str, Counter]: ...
    def eligible(self, k: int = 3, rule: EligibilityRule = "first",
                 names: NameKey = "normalized") -> list[EligibleIntervention]: ...
    def stats(self) -> dict: ...
    def close(self) -> None: ...


TrialStoreBackend = TrialStore


def trial_index_fields(trial: Trial) -> tuple[list[tuple[int, str, str, str]], list[str]]:
    """(position, normalised name, lower-cased name, type) per intervention, and distinct conditions."""
    interventions = [
        (position, normalize_intervention(item.name), item.name.strip().lower(), item.type.value)
        for position, item in enumerate(trial.interventions)
    ]
    conditions = sorted({normalize_condition(c) for c in trial.conditions if c.strip()})
    return interventions, conditions


def eligible_from_counts(counts: dict[str, Counter], k: int) -> list[EligibleIntervention]:
    """The paper's rule: at least k successful and k failed trials."""
    out = [
        EligibleIntervention(intervention=name, successes=c[1], failures=c[0])
        for name, c in counts.items()
        if c[1] >= k and c[0] >= k
    ]
    return sorted(out, key=lambda e: (-(e.successes + e.failures), e.intervention))


def stats_from(trials_by: dict[str, Counter], total: int, top: int = 20) -> dict:
    return {"trials": total, **{key: dict(c.most_common(top)) for key, c in trials_by.items()}}


def open_store(location: str | Path, *, embedding_model: str | None = None, create: bool = True,
               collection: str = "Trial") -> TrialStoreBackend:
    """Open a store: a folder path (local) or an http(s) URL / ``weaviate+https://`` (Weaviate)."""
    text = str(location)
    if text.startswith(("http://", "https://", "weaviate+")):
        from synthtrials.tools.weaviate_store import WeaviateTrialStore

        return WeaviateTrialStore(text, collection=collection, embedding_model=embedding_model)
    return LocalTrialStore(Path(location), embedding_model=embedding_model, create=create)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    nct_id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    label INTEGER,
    phase TEXT,
    source TEXT NOT NULL,
    embed_text TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS trial_interventions (
    nct_id TEXT NOT NULL REFERENCES trials(nct_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    lowercase TEXT NOT NULL,
    type TEXT NOT NULL,
    PRIMARY KEY (nct_id, position)
);
CREATE INDEX IF NOT EXISTS trial_interventions_name ON trial_interventions(name);
CREATE INDEX IF NOT EXISTS trial_interventions_lowercase ON trial_interventions(lowercase);
CREATE TABLE IF NOT EXISTS trial_conditions (
    nct_id TEXT NOT NULL REFERENCES trials(nct_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (nct_id, name)
);
CREATE INDEX IF NOT EXISTS trial_conditions_name ON trial_conditions(name);
"""

STORE_FILE = "trials.sqlite"
BM25_FILE = "bm25.pkl"


class LocalTrialStore:
    """The local, embedded store (see the module docstring)."""

    def __init__(self, path: Path, embedding_model: str | None = None, create: bool = True) -> None:
        self.path = Path(path)
        db_path = self.path / STORE_FILE
        if not db_path.exists():
            if not create:
                raise ConfigError(f"{self.path}: no trial store here (run `synthtrials ingest ... --store {self.path}`)")
            if self.path.exists() and not self.path.is_dir():
                raise ConfigError(f"{self.path}: exists and is not a folder")
            self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{db_path}: not a synthtrials store ({exc})") from None
        stored_model = self._meta("embedding_model")
        if stored_model and embedding_model and stored_model != embedding_model:
            raise ConfigError(f"{self.path}: store was embedded with {stored_model}, not {embedding_model}")
        self.embedding_model = stored_model or embedding_model or DEFAULT_EMBEDDING_MODEL
        self._bm25: BM25Index | None = None
        self._load_index()

    # -- metadata and in-memory index --------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _load_index(self) -> None:
        self._vectors = NumpyVectorStore(_LazyEmbeddings(self))
        ids: list[str] = []
        labels: list[int] = []
        phases: list[str] = []
        sources: list[str] = []
        blobs: list[bytes] = []
        texts: list[str] = []
        for nct_id, label, phase, source, text, blob in self._db.execute(
            "SELECT nct_id, label, phase, source, embed_text, embedding FROM trials ORDER BY rowid"
        ):
            ids.append(nct_id)
            texts.append(text)
            labels.append(-1 if label is None else int(label))
            phases.append(phase or "")
            sources.append(source)
            blobs.append(blob)
        if ids:
            matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), -1)
            metadatas = [{"nct_id": i, "label": None if l < 0 else l, "phase": p or None, "source": s}
                         for i, l, p, s in zip(ids, labels, phases, sources)]
            self._vectors.add_vectors(ids, matrix, texts, metadatas)
        self._labels = np.asarray(labels, dtype=np.int8)
        self._phases = np.asarray(phases, dtype=object)
        self._sources = np.asarray(sources, dtype=object)

    @property
    def embeddings(self):
        return get_embeddings(self.embedding_model)

    @property
    def vectorstore(self) -> NumpyVectorStore:
        """The LangChain vector store (use `.as_retriever()` for a LangChain retriever)."""
        return self._vectors

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, trials: Sequence[Trial], progress: ProgressFn | None = None,
               vectors: np.ndarray | None = None) -> UpsertReport:
        """Insert or replace trials by NCT id in one transaction (all or nothing).

        Unchanged embedding texts reuse their stored vectors; `vectors` supplies precomputed ones.
        """
        report = UpsertReport()
        if not trials:
            return report
        texts = [render_for_embedding(t) for t in trials]
        existing: dict[str, tuple[str, bytes]] = {}
        ids = [t.nct_id for t in trials]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for nct_id, text, blob in self._db.execute(
                f"SELECT nct_id, embed_text, embedding FROM trials WHERE nct_id IN ({marks})", chunk
            ):
                existing[nct_id] = (text, blob)
        if vectors is None:
            vectors = self._embed(trials, texts, existing, progress, report)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(trials):
            raise ValueError("one vector per trial is needed")
        stored_dim = self._meta("dimension")
        if stored_dim and int(stored_dim) != vectors.shape[1]:
            raise ConfigError(f"{self.path}: store holds {stored_dim}-d vectors, got {vectors.shape[1]}-d")
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('embedding_model', ?)", (self.embedding_model,))
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('dimension', ?)", (str(vectors.shape[1]),))
            for trial, text, vector in zip(trials, texts, vectors):
                row = (trial.model_dump_json(), trial.label, trial.phase.value if trial.phase else None,
                       trial.source, text, vector.tobytes(), trial.nct_id)
                if trial.nct_id in existing:
                    report.updated += 1
                    cur.execute("DELETE FROM trial_interventions WHERE nct_id = ?", (trial.nct_id,))
                    cur.execute("DELETE FROM trial_conditions WHERE nct_id = ?", (trial.nct_id,))
                    cur.execute("UPDATE trials SET record=?, label=?, phase=?, source=?, embed_text=?, embedding=? "
                                "WHERE nct_id=?", row)
                else:
                    report.inserted += 1
                    cur.execute("INSERT INTO trials (record, label, phase, source, embed_text, embedding, nct_id) "
                                "VALUES (?,?,?,?,?,?,?)", row)
                    existing[trial.nct_id] = (text, b"")
                interventions, conditions = trial_index_fields(trial)
                cur.executemany("INSERT INTO trial_interventions VALUES (?,?,?,?,?)",
                                [(trial.nct_id, *item) for item in interventions])
                cur.executemany("INSERT INTO trial_conditions VALUES (?,?)", [(trial.nct_id, c) for c in conditions])
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (str(int(self._meta("revision") or 0) + 1),))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        report.ids = ids
        self._load_index()
        self._bm25 = None
        return report

    def _embed(self, trials: Sequence[Trial], texts: list[str], existing: dict[str, tuple[str, bytes]],
               progress: ProgressFn | None, report: UpsertReport) -> np.ndarray:
        """Vectors for the trials, reusing stored ones whose embedding text is unchanged."""
        matrix: list[np.ndarray | None] = [None] * len(trials)
        todo = []
        for i, (trial, text) in enumerate(zip(trials, texts)):
            old = existing.get(trial.nct_id)
            if old is not None and old[0] == text:
                matrix[i] = np.frombuffer(old[1], dtype=np.float32)
            else:
                todo.append(i)
        batch = 256
        for start in range(0, len(todo), batch):
            idx = todo[start:start + batch]
            embedded = self.embeddings.embed_array([texts[i] for i in idx])
            for j, i in enumerate(idx):
                matrix[i] = embedded[j]
            if progress:
                progress(min(start + batch, len(todo)), len(todo))
        report.embedded = len(todo)
        return np.stack(matrix).astype(np.float32)  # type: ignore[arg-type]

    # -- reading -----------------------------------------------------------------------------
    def count(self) -> int:
        return len(self._vectors)

    def get(self, nct_id: str) -> Trial | None:
        row = self._db.execute("SELECT record FROM trials WHERE nct_id = ?", (nct_id,)).fetchone()
        return Trial.model_validate_json(row[0]) if row else None

    def get_many(self, ids: Sequence[str]) -> list[Trial]:
        found: dict[str, Trial] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            marks = ",".join("?" * len(chunk))
            for nct_id, record in self._db.execute(f"SELECT nct_id, record FROM trials WHERE nct_id IN ({marks})", chunk):
                found[nct_id] = Trial.model_validate_json(record)
        return [found[i] for i in ids if i in found]

    def _mask(self, flt: TrialFilter | None) -> np.ndarray | None:
        """A boolean mask over index rows, or None for 'no filter'."""
        if flt is None:
            return None
        flt = flt.normalised()
        mask = np.ones(len(self._vectors), dtype=bool)
        if flt.label is not None:
            mask &= self._labels == int(flt.label)
        if flt.phase is not None:
            mask &= self._phases == flt.phase.value  # type: ignore[union-attr]
        if flt.source is not None:
            mask &= self._sources == flt.source
        for table, value in (("trial_interventions", flt.intervention), ("trial_conditions", flt.condition)):
            if value:
                allowed = np.zeros_like(mask)
                for (nct_id,) in self._db.execute(f"SELECT nct_id FROM {table} WHERE name = ?", (value,)):
                    row = self._vectors.row_of(nct_id)
                    if row is not None:
                        allowed[row] = True
                mask &= allowed
        for nct_id in flt.exclude_ids:
            row = self._vectors.row_of(nct_id)
            if row is not None:
                mask[row] = False
        return mask

    def filter_ids(self, flt: TrialFilter | None = None) -> list[str]:
        ids = self._vectors.ids
        mask = self._mask(flt)
        if mask is None:
            return list(ids)
        return [ids[i] for i in np.flatnonzero(mask)]

    def filter(self, flt: TrialFilter | None = None, limit: int | None = None) -> list[Trial]:
        ids = self.filter_ids(flt)
        return self.get_many(ids[:limit] if limit else ids)

    def _hits(self, ranked: list[tuple[str, float]]) -> list[SearchHit]:
        trials = {t.nct_id: t for t in self.get_many([i for i, _ in ranked])}
        return [SearchHit(trial=trials[i], score=s) for i, s in ranked if i in trials]

    def search_by_vector(self, vector: Sequence[float], k: int = 5, flt: TrialFilter | None = None) -> list[SearchHit]:
        return self._hits(self._vectors.search_vector(vector, k, self._mask(flt)))

    def _bm25_index(self) -> BM25Index:
        if self._bm25 is not None:
            return self._bm25
        revision = self._meta("revision") or "0"
        cache = self.path / BM25_FILE
        if cache.exists():
            try:
                with cache.open("rb") as handle:
                    cached_revision, index = pickle.load(handle)
                if cached_revision == revision:
                    self._bm25 = index
                    return index
            except Exception:  # a stale or corrupt cache is rebuilt
                pass
        texts = [render_for_classifier(Trial.model_validate_json(r)) for (r,) in
                 self._db.execute("SELECT record FROM trials ORDER BY rowid")]
        self._bm25 = BM25Index().fit(texts)
        with atomic_open(cache, "wb") as handle:
            pickle.dump((revision, self._bm25), handle)
        return self._bm25

    def search(self, query: str, k: int = 5, flt: TrialFilter | None = None,
               mode: SearchMode = "semantic") -> list[SearchHit]:
        """Semantic, BM25, or hybrid (reciprocal-rank fusion of both) search with filters."""
        if len(self._vectors) == 0:
            return []
        mask = self._mask(flt)
        ids = self._vectors.ids
        if mode == "semantic":
            return self._hits(self._vectors.search_vector(self.embeddings.embed_query(query), k, mask))
        if mode == "bm25":
            return self._hits([(ids[i], s) for i, s in self._bm25_index().top(query, k, mask)])
        if mode == "hybrid":
            depth = max(k * 4, 20)
            semantic = self._vectors.search_vector(self.embeddings.embed_query(query), depth, mask)
            lexical = [(ids[i], s) for i, s in self._bm25_index().top(query, depth, mask)]
            fused: dict[str, float] = {}
            for results in (semantic, lexical):
                for rank, (doc_id, _) in enumerate(results):
                    fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (60 + rank)
            return self._hits(sorted(fused.items(), key=lambda x: -x[1])[:k])
        raise ConfigError(f"unknown search mode {mode!r} (semantic, bm25 or hybrid)")

    def intervention_label_counts(self, rule: EligibilityRule = "first",
                                  names: NameKey = "normalized") -> dict[str, Counter]:
        """Per drug name, the number of real trials labelled 1 and 0.

        rule "first": each trial counts its first-listed drug; "any": every listed drug, once.
        names "normalized": case, whitespace and dose text removed ("raltegravir 400 mg" is
        raltegravir); "lowercase": lower-cased only, as the seed paper counted.
        """
        if rule not in ("first", "any"):
            raise ConfigError(f"unknown eligibility rule {rule!r} (first or any)")
        if names not in ("normalized", "lowercase"):
            raise ConfigError(f"unknown name matching {names!r} (normalized or lowercase)")
        key = "name" if names == "normalized" else "lowercase"
        marks = ",".join("?" * len(DRUG_TYPES))
        first = (f"AND i.position = (SELECT MIN(j.position) FROM trial_interventions j "
                 f"WHERE j.nct_id = i.nct_id AND j.type IN ({marks}))") if rule == "first" else ""
        params = DRUG_TYPES * (2 if rule == "first" else 1)
        counts: dict[str, Counter] = {}
        for name, label, n in self._db.execute(
            f"""SELECT i.{key}, t.label, COUNT(DISTINCT i.nct_id) FROM trial_interventions i
                JOIN trials t USING (nct_id)
                WHERE t.label IS NOT NULL AND t.source = 'real' AND i.type IN ({marks}) AND i.{key} != '' {first}
                GROUP BY i.{key}, t.label""",
            params,
        ):
            counts.setdefault(name, Counter())[int(label)] = n
        return counts

    def eligible(self, k: int = 3, rule: EligibilityRule = "first",
                 names: NameKey = "normalized") -> list[EligibleIntervention]:
        return eligible_from_counts(self.intervention_label_counts(rule, names), k)

    def stats(self) -> dict:
        by_label = Counter({("unlabelled" if l is None else str(l)): n for l, n in
                            self._db.execute("SELECT label, COUNT(*) FROM trials GROUP BY label")})
        by_phase = Counter({(p or "unknown"): n for p, n in
                            self._db.execute("SELECT phase, COUNT(*) FROM trials GROUP BY phase")})
        by_source = Counter(dict(self._db.execute("SELECT source, COUNT(*) FROM trials GROUP BY source").fetchall()))
        by_intervention = Counter(dict(self._db.execute(
            "SELECT name, COUNT(DISTINCT nct_id) FROM trial_interventions GROUP BY name ORDER BY 2 DESC LIMIT 20").fetchall()))
        return stats_from({"label": by_label, "phase": by_phase, "source": by_source,
                           "intervention": by_intervention}, self.count())

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LocalTrialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LazyEmbeddings:
    """Loads the store's encoder only when a text must be embedded."""

    def __init__(self, store: LocalTrialStore) -> None:
        self._store = store

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._store.embeddings.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._store.embeddings.embed_query(text)

