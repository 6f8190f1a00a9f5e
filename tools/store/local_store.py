"""`LocalTrialStore`, the local, embedded store (the default): one folder holding a SQLite file (trials,
normalised intervention and condition names, embeddings) — every upsert is one transaction, so a failed
ingest leaves the store as it was — a `NumpyVectorStore` (a LangChain vector store) loaded from it, and
a BM25 index beside it."""


from __future__ import annotations

import json
import pickle
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from synthtrials.tools.atomic import atomic_open
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.progress import ProgressFn
from synthtrials.tools.records.eligibility import (
    InterventionKey,
)
from synthtrials.tools.records.splits import (
    SPLITS,
    Split,
    check_split,
    is_stricter,
    split_from_source_name,
)
from synthtrials.tools.records.trial import (
    Trial,
    render_for_classifier,
    render_for_embedding,
)
from synthtrials.tools.store.bm25 import BM25Index
from synthtrials.tools.store.embeddings import (
    DEFAULT_EMBEDDING_MODEL,
    get_embeddings,
)
from synthtrials.tools.store.protocol import (
    SearchHit,
    SearchMode,
    SplitUpgrade,
    TrialFilter,
    UpsertReport,
    stats_from,
    trial_index_fields,
)
from synthtrials.tools.store.vectorstore import NumpyVectorStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    nct_id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    label INTEGER,
    phase TEXT,
    source TEXT NOT NULL,
    split TEXT NOT NULL DEFAULT 'pool',
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
CREATE TABLE IF NOT EXISTS section_vectors (text TEXT PRIMARY KEY, embedding BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS calibrations (key TEXT PRIMARY KEY, created TEXT NOT NULL, data TEXT NOT NULL);
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
            self._write_lock = threading.RLock()
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(_SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{db_path}: not a synthtrials store ({exc})") from None
        stored_model = self._meta("embedding_model")
        if stored_model and embedding_model and stored_model != embedding_model:
            raise ConfigError(f"{self.path}: store was embedded with {stored_model}, not {embedding_model}")
        self.embedding_model = stored_model or embedding_model or DEFAULT_EMBEDDING_MODEL
        self._bm25: BM25Index | None = None
        self._load_index()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # one connection serves every thread (parallel draws embed sections through it): one writer at a time
        with self._write_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- metadata and in-memory index --------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _migrate(self) -> None:
        """Stores written before splits existed: add the column, derive splits from source file names."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(trials)")}
        if "split" in columns:
            return
        self._db.execute("ALTER TABLE trials ADD COLUMN split TEXT NOT NULL DEFAULT 'pool'")
        rows = [(split_from_source_name(json.loads(record).get("provenance", {}).get("file") or ""), nct_id)
                for nct_id, record in self._db.execute("SELECT nct_id, record FROM trials")]
        self._db.executemany("UPDATE trials SET split = ? WHERE nct_id = ?", rows)

    def _load_index(self) -> None:
        self._vectors = NumpyVectorStore(_LazyEmbeddings(self))
        ids: list[str] = []
        labels: list[int] = []
        phases: list[str] = []
        sources: list[str] = []
        splits: list[str] = []
        blobs: list[bytes] = []
        texts: list[str] = []
        for nct_id, label, phase, source, split, text, blob in self._db.execute(
            "SELECT nct_id, label, phase, source, split, embed_text, embedding FROM trials ORDER BY rowid"
        ):
            ids.append(nct_id)
            texts.append(text)
            labels.append(-1 if label is None else int(label))
            phases.append(phase or "")
            sources.append(source)
            splits.append(split)
            blobs.append(blob)
        if ids:
            matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), -1)
            metadatas = [{"nct_id": i, "label": None if l < 0 else l, "phase": p or None, "source": s, "split": sp}
                         for i, l, p, s, sp in zip(ids, labels, phases, sources, splits)]
            self._vectors.add_vectors(ids, matrix, texts, metadatas)
        self._labels = np.asarray(labels, dtype=np.int8)
        self._phases = np.asarray(phases, dtype=object)
        self._sources = np.asarray(sources, dtype=object)
        self._splits = np.asarray(splits, dtype=object)

    @property
    def embeddings(self):
        return get_embeddings(self.embedding_model)

    @property
    def vectorstore(self) -> NumpyVectorStore:
        """The LangChain vector store (use `.as_retriever()` for a LangChain retriever)."""
        return self._vectors

    # -- writing -----------------------------------------------------------------------------
    def upsert(self, trials: Sequence[Trial], progress: ProgressFn | None = None, vectors: np.ndarray | None = None,
               splits: Mapping[str, Split] | None = None) -> UpsertReport:
        """Insert or replace trials by NCT id in one transaction (all or nothing).

        Unchanged embedding texts reuse their stored vectors; `vectors` supplies precomputed ones.
        `splits` gives trials their split; a stored trial keeps the stricter of its stored and its
        new split (never downgraded), and each upgrade is reported. New trials default to pool.
        """
        report = UpsertReport()
        if not trials:
            return report
        texts = [render_for_embedding(t) for t in trials]
        existing: dict[str, tuple[str, bytes]] = {}
        stored_split: dict[str, str] = {}
        ids = [t.nct_id for t in trials]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for nct_id, text, blob, split in self._db.execute(
                f"SELECT nct_id, embed_text, embedding, split FROM trials WHERE nct_id IN ({marks})", chunk
            ):
                existing[nct_id] = (text, blob)
                stored_split[nct_id] = split
        new_split: dict[str, str] = {}
        for nct_id in ids:
            old = stored_split.get(nct_id, "pool")
            given = check_split((splits or {}).get(nct_id, old))
            new_split[nct_id] = given if is_stricter(given, old) else old
            if nct_id in stored_split and is_stricter(given, old):
                report.split_upgrades.append(SplitUpgrade(nct_id, old, given))
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
                       trial.source, new_split[trial.nct_id], text, vector.tobytes(), trial.nct_id)
                if trial.nct_id in existing:
                    report.updated += 1
                    cur.execute("DELETE FROM trial_interventions WHERE nct_id = ?", (trial.nct_id,))
                    cur.execute("DELETE FROM trial_conditions WHERE nct_id = ?", (trial.nct_id,))
                    cur.execute("UPDATE trials SET record=?, label=?, phase=?, source=?, split=?, embed_text=?, "
                                "embedding=? WHERE nct_id=?", row)
                else:
                    report.inserted += 1
                    cur.execute("INSERT INTO trials (record, label, phase, source, split, embed_text, embedding, "
                                "nct_id) VALUES (?,?,?,?,?,?,?,?)", row)
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
        if flt.splits is not None:
            mask &= np.isin(self._splits, sorted(flt.splits))
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
        if flt.ids is not None:
            allowed = np.zeros_like(mask)
            for nct_id in flt.ids:
                row = self._vectors.row_of(nct_id)
                if row is not None:
                    allowed[row] = True
            mask &= allowed
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

    def intervention_rows(self, flt: TrialFilter | None = None) -> list[tuple[int | None, list[InterventionKey]]]:
        """(label, interventions in listed order) of every trial matching `flt`."""
        allowed = set(self.filter_ids(flt)) if flt is not None else None
        rows: dict[str, tuple[int | None, list[InterventionKey]]] = {}
        for nct_id, label, name, lowercase, kind in self._db.execute(
            "SELECT t.nct_id, t.label, i.name, i.lowercase, i.type FROM trials t "
            "LEFT JOIN trial_interventions i USING (nct_id) ORDER BY t.rowid, i.position"
        ):
            if allowed is not None and nct_id not in allowed:
                continue
            entry = rows.setdefault(nct_id, (label, []))
            if name is not None:
                entry[1].append(InterventionKey(name, lowercase, kind))
        return list(rows.values())

    def split_counts(self) -> dict[str, int]:
        counts = dict(self._db.execute("SELECT split, COUNT(*) FROM trials WHERE source = 'real' GROUP BY split"))
        return {name: counts[name] for name in SPLITS if name in counts}

    def section_vectors(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Embeddings of section texts (criteria, conditions...), cached in the store: each distinct
        text is embedded once, ever."""
        distinct = list(dict.fromkeys(texts))
        cached: dict[str, np.ndarray] = {}
        for start in range(0, len(distinct), 500):
            chunk = distinct[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for text, blob in self._db.execute(f"SELECT text, embedding FROM section_vectors WHERE text IN ({marks})", chunk):
                cached[text] = np.frombuffer(blob, dtype=np.float32)
        missing = [t for t in distinct if t not in cached]
        batch = 512
        for start in range(0, len(missing), batch):
            chunk = missing[start:start + batch]
            vectors = self.embeddings.embed_array(chunk)
            with self._transaction():  # one per batch: an interrupted run keeps what it embedded
                self._db.executemany("INSERT OR REPLACE INTO section_vectors VALUES (?, ?)",
                                     [(t, v.astype(np.float32).tobytes()) for t, v in zip(chunk, vectors)])
            cached.update(zip(chunk, vectors.astype(np.float32)))
            if progress:
                progress(min(start + batch, len(missing)), len(missing))
        dim = next(iter(cached.values())).shape[0] if cached else 0
        return np.stack([cached[t] for t in texts]) if texts else np.zeros((0, dim), dtype=np.float32)

    def load_calibration(self, key: str) -> dict | None:
        row = self._db.execute("SELECT data FROM calibrations WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def save_calibration(self, key: str, data: dict) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO calibrations VALUES (?, datetime('now'), ?)",
                             (key, json.dumps(data)))

    def calibrations(self) -> list[dict]:
        return [{"key": key, "created": created, **json.loads(data)}
                for key, created, data in self._db.execute("SELECT key, created, data FROM calibrations ORDER BY created")]

    def stats(self) -> dict:
        by_label = Counter({("unlabelled" if l is None else str(l)): n for l, n in
                            self._db.execute("SELECT label, COUNT(*) FROM trials GROUP BY label")})
        by_phase = Counter({(p or "unknown"): n for p, n in
                            self._db.execute("SELECT phase, COUNT(*) FROM trials GROUP BY phase")})
        by_source = Counter(dict(self._db.execute("SELECT source, COUNT(*) FROM trials GROUP BY source").fetchall()))
        by_intervention = Counter(dict(self._db.execute(
            "SELECT name, COUNT(DISTINCT nct_id) FROM trial_interventions GROUP BY name ORDER BY 2 DESC LIMIT 20").fetchall()))
        return stats_from({"label": by_label, "phase": by_phase, "source": by_source, "split": Counter(self.split_counts()),
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

