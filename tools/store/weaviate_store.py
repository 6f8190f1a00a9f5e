"""TrialStore on a Weaviate server, cluster or cloud (weaviate-client v4).

One collection (default ``Trial``) holds one object per trial, keyed by a UUID derived from the
NCT id (so re-ingest overwrites, never duplicates), with our own embeddings as its vectors
(self-provided: the server needs no vectorizer module). Search is near-vector, BM25 or Weaviate's
hybrid, all with filters on label, phase, source, intervention and condition.

Locations: ``http://host:8080`` (gRPC on 50051, or ``?grpc=PORT``), ``https://...``, or
``weaviate+https://CLUSTER_URL`` for Weaviate Cloud with the API key in ``WEAVIATE_API_KEY``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlparse

import numpy as np
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.progress import ProgressFn
from synthtrials.tools.records.eligibility import InterventionKey
from synthtrials.tools.records.splits import SPLITS, Split, check_split, is_stricter
from synthtrials.tools.records.trial import (
    Trial,
    render_for_classifier,
    render_for_embedding,
)
from synthtrials.tools.store.embeddings import DEFAULT_EMBEDDING_MODEL, get_embeddings
from synthtrials.tools.store.protocol import (
    SearchHit,
    SearchMode,
    SplitUpgrade,
    TrialFilter,
    UpsertReport,
    stats_from,
    trial_index_fields,
)


def connect(location: str):
    """A connected `weaviate.WeaviateClient` for a location string (see the module docstring)."""
    import weaviate
    from weaviate.classes.init import Auth

    api_key = os.environ.get("WEAVIATE_API_KEY")
    if location.startswith("weaviate+"):
        url = location[len("weaviate+"):]
        if not api_key:
            raise ConfigError(f"{location}: set WEAVIATE_API_KEY for Weaviate Cloud")
        return weaviate.connect_to_weaviate_cloud(cluster_url=url, auth_credentials=Auth.api_key(api_key))
    parsed = urlparse(location)
    if not parsed.hostname:
        raise ConfigError(f"{location}: not a Weaviate URL")
    secure = parsed.scheme == "https"
    grpc_port = int(parse_qs(parsed.query).get("grpc", ["443" if secure else "50051"])[0])
    try:
        return weaviate.connect_to_custom(
            http_host=parsed.hostname, http_port=parsed.port or (443 if secure else 8080), http_secure=secure,
            grpc_host=parsed.hostname, grpc_port=grpc_port, grpc_secure=secure,
            auth_credentials=Auth.api_key(api_key) if api_key else None,
        )
    except Exception as exc:  # the client raises several connection error types
        raise ConfigError(f"{location}: cannot connect to Weaviate ({type(exc).__name__}: {str(exc)[:160]})") from None


def trial_properties(trial: Trial, split: Split = "pool") -> dict:
    interventions, conditions = trial_index_fields(trial)
    return {
        "split": split,
        "nct_id": trial.nct_id,
        "record": trial.model_dump_json(),
        "text": render_for_classifier(trial),
        "embed_text": render_for_embedding(trial),
        "label": -1 if trial.label is None else int(trial.label),
        "phase": trial.phase.value if trial.phase else "",
        "source": trial.source,
        "interventions": [name for _, name, _, _ in interventions],
        "interventions_lowercase": [low for _, _, low, _ in interventions],
        "intervention_types": [kind for _, _, _, kind in interventions],
        "conditions": conditions,
    }


class WeaviateTrialStore:
    """The Weaviate backend of TrialStore (same surface as `LocalTrialStore`)."""

    def __init__(self, location: str, collection: str = "Trial", embedding_model: str | None = None) -> None:
        from weaviate.classes.config import Configure, DataType, Property, Tokenization

        self.location = location
        self.embedding_model = embedding_model or DEFAULT_EMBEDDING_MODEL
        self._client = connect(location)
        text = dict(data_type=DataType.TEXT)
        keyword = dict(data_type=DataType.TEXT, tokenization=Tokenization.FIELD)
        if not self._client.collections.exists(collection):
            self._client.collections.create(
                collection,
                vector_config=Configure.Vectors.self_provided(),
                properties=[
                    Property(name="nct_id", **keyword),
                    Property(name="record", data_type=DataType.TEXT, skip_vectorization=True,
                             index_searchable=False, index_filterable=False),
                    Property(name="text", **text),
                    Property(name="embed_text", **text),
                    Property(name="label", data_type=DataType.INT),
                    Property(name="phase", **keyword),
                    Property(name="source", **keyword),
                    Property(name="split", **keyword),
                    Property(name="interventions", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD),
                    Property(name="interventions_lowercase", data_type=DataType.TEXT_ARRAY,
                             tokenization=Tokenization.FIELD),
                    Property(name="intervention_types", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD),
                    Property(name="conditions", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD),
                ],
            )
        self._collection = self._client.collections.get(collection)
        self._sections = self._side_collection(f"{collection}Section", [Property(name="text", **keyword)], vectors=True)
        self._calibrations = self._side_collection(f"{collection}Calibration", [
            Property(name="key", **keyword), Property(name="created", **keyword),
            Property(name="data", data_type=DataType.TEXT, index_searchable=False, index_filterable=False)])

    def _side_collection(self, name: str, properties: list, vectors: bool = False):
        """A second collection beside the trials: section embeddings, calibrations."""
        from weaviate.classes.config import Configure

        if not self._client.collections.exists(name):
            self._client.collections.create(name, properties=properties,
                                            vector_config=Configure.Vectors.self_provided() if vectors else None)
        return self._client.collections.get(name)

    @property
    def embeddings(self):
        return get_embeddings(self.embedding_model)

    def _filters(self, flt: TrialFilter | None):
        from weaviate.classes.query import Filter

        if flt is None:
            return None
        flt = flt.normalised()
        parts = []
        if flt.label is not None:
            parts.append(Filter.by_property("label").equal(int(flt.label)))
        if flt.phase is not None:
            parts.append(Filter.by_property("phase").equal(flt.phase.value))  # type: ignore[union-attr]
        if flt.source is not None:
            parts.append(Filter.by_property("source").equal(flt.source))
        if flt.splits is not None:
            parts.append(Filter.by_property("split").contains_any(sorted(flt.splits)) if flt.splits
                         else Filter.by_property("split").equal("(none)"))
        if flt.intervention:
            parts.append(Filter.by_property("interventions").contains_any([flt.intervention]))
        if flt.condition:
            parts.append(Filter.by_property("conditions").contains_any([flt.condition]))
        if flt.exclude_ids:
            parts.append(Filter.by_property("nct_id").contains_none(sorted(flt.exclude_ids)))
        if flt.ids is not None:
            parts.append(Filter.by_property("nct_id").contains_any(sorted(flt.ids) or [""]))
        if not parts:
            return None
        return Filter.all_of(parts) if len(parts) > 1 else parts[0]

    def _stored_splits(self, ids: Sequence[str]) -> dict[str, str]:
        from weaviate.classes.query import Filter

        out: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            result = self._collection.query.fetch_objects(
                filters=Filter.by_property("nct_id").contains_any(list(ids[start:start + 500])), limit=500,
                return_properties=["nct_id", "split"])
            out.update({o.properties["nct_id"]: o.properties.get("split") or "pool" for o in result.objects})
        return out

    def upsert(self, trials: Sequence[Trial], progress: ProgressFn | None = None, vectors: np.ndarray | None = None,
               splits: Mapping[str, Split] | None = None) -> UpsertReport:
        from weaviate.util import generate_uuid5

        report = UpsertReport()
        if not trials:
            return report
        stored = self._stored_splits([t.nct_id for t in trials])
        new_split: dict[str, Split] = {}
        for trial in trials:
            old = check_split(stored.get(trial.nct_id, "pool"))
            given = check_split((splits or {}).get(trial.nct_id, old))
            new_split[trial.nct_id] = given if is_stricter(given, old) else old
            if trial.nct_id in stored and is_stricter(given, old):
                report.split_upgrades.append(SplitUpgrade(trial.nct_id, old, given))
        if vectors is None:
            vectors = self.embeddings.embed_array([render_for_embedding(t) for t in trials])
            report.embedded = len(trials)
        with self._collection.batch.fixed_size(batch_size=200) as batch:
            for i, (trial, vector) in enumerate(zip(trials, vectors)):
                batch.add_object(properties=trial_properties(trial, new_split[trial.nct_id]),
                                 uuid=generate_uuid5(trial.nct_id), vector=[float(x) for x in vector])
                if progress and (i + 1) % 200 == 0:
                    progress(i + 1, len(trials))
        failed = self._collection.batch.failed_objects
        if failed:
            raise ConfigError(f"{self.location}: Weaviate rejected {len(failed)} objects ({failed[0].message[:160]})")
        report.updated = len(stored)
        report.inserted = len(trials) - len(stored)
        return report

    def get(self, nct_id: str) -> Trial | None:
        from weaviate.util import generate_uuid5

        obj = self._collection.query.fetch_object_by_id(generate_uuid5(nct_id))
        return Trial.model_validate_json(obj.properties["record"]) if obj else None

    def get_many(self, ids: Sequence[str]) -> list[Trial]:
        from weaviate.classes.query import Filter

        found: dict[str, Trial] = {}
        for start in range(0, len(ids), 500):
            result = self._collection.query.fetch_objects(
                filters=Filter.by_property("nct_id").contains_any(list(ids[start:start + 500])), limit=500,
                return_properties=["nct_id", "record"])
            found.update({o.properties["nct_id"]: Trial.model_validate_json(o.properties["record"])
                          for o in result.objects})
        return [found[i] for i in ids if i in found]

    def count(self) -> int:
        return int(self._collection.aggregate.over_all(total_count=True).total_count or 0)

    def _iterate(self, properties: list[str]):
        for obj in self._collection.iterator(return_properties=properties):
            yield obj.properties

    def filter_ids(self, flt: TrialFilter | None = None) -> list[str]:
        if flt is None:
            return [p["nct_id"] for p in self._iterate(["nct_id"])]
        result = self._collection.query.fetch_objects(filters=self._filters(flt), limit=10_000,
                                                      return_properties=["nct_id"])
        return [o.properties["nct_id"] for o in result.objects]

    def filter(self, flt: TrialFilter | None = None, limit: int | None = None) -> list[Trial]:
        result = self._collection.query.fetch_objects(filters=self._filters(flt), limit=limit or 10_000,
                                                      return_properties=["record"])
        return [Trial.model_validate_json(o.properties["record"]) for o in result.objects]

    def _hits(self, result) -> list[SearchHit]:
        hits = []
        for obj in result.objects:
            meta = obj.metadata
            score = meta.score if meta.score is not None else (1.0 - (meta.distance or 0.0))
            hits.append(SearchHit(trial=Trial.model_validate_json(obj.properties["record"]), score=float(score)))
        return hits

    def search_by_vector(self, vector: Sequence[float], k: int = 5, flt: TrialFilter | None = None) -> list[SearchHit]:
        from weaviate.classes.query import MetadataQuery

        return self._hits(self._collection.query.near_vector(
            near_vector=[float(x) for x in vector], limit=k, filters=self._filters(flt),
            return_metadata=MetadataQuery(distance=True), return_properties=["record"]))

    def search(self, query: str, k: int = 5, flt: TrialFilter | None = None,
               mode: SearchMode = "semantic") -> list[SearchHit]:
        from weaviate.classes.query import MetadataQuery

        if mode == "semantic":
            return self.search_by_vector(self.embeddings.embed_query(query), k, flt)
        if mode == "bm25":
            return self._hits(self._collection.query.bm25(
                query=query, query_properties=["text"], limit=k, filters=self._filters(flt),
                return_metadata=MetadataQuery(score=True), return_properties=["record"]))
        if mode == "hybrid":
            return self._hits(self._collection.query.hybrid(
                query=query, vector=self.embeddings.embed_query(query), query_properties=["text"], alpha=0.5,
                limit=k, filters=self._filters(flt), return_metadata=MetadataQuery(score=True),
                return_properties=["record"]))
        raise ConfigError(f"unknown search mode {mode!r} (semantic, bm25 or hybrid)")

    def intervention_rows(self, flt: TrialFilter | None = None) -> list[tuple[int | None, list[InterventionKey]]]:
        names = ["label", "interventions", "interventions_lowercase", "intervention_types"]
        if flt is None:
            objects = self._iterate(names)
        else:
            objects = (o.properties for o in self._collection.query.fetch_objects(
                filters=self._filters(flt), limit=10_000, return_properties=names).objects)
        rows = []
        for props in objects:
            label = None if props["label"] in (-1, None) else int(props["label"])
            keys = [InterventionKey(*k) for k in zip(props["interventions"] or [], props["interventions_lowercase"] or [],
                                                     props["intervention_types"] or [])]
            rows.append((label, keys))
        return rows

    def split_counts(self) -> dict[str, int]:
        counts: Counter = Counter()
        for props in self._iterate(["split", "source"]):
            if props["source"] == "real":
                counts[props.get("split") or "pool"] += 1
        return {name: counts[name] for name in SPLITS if counts[name]}

    def section_vectors(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Section embeddings, cached in the second collection (one object per distinct text)."""
        from weaviate.util import generate_uuid5

        distinct = list(dict.fromkeys(texts))
        cached: dict[str, np.ndarray] = {}
        for text in distinct:
            obj = self._sections.query.fetch_object_by_id(generate_uuid5(text), include_vector=True)
            if obj is not None:
                vector = obj.vector["default"] if isinstance(obj.vector, dict) else obj.vector
                cached[text] = np.asarray(vector, dtype=np.float32)
        missing = [t for t in distinct if t not in cached]
        for start in range(0, len(missing), 512):
            chunk = missing[start:start + 512]
            vectors = self.embeddings.embed_array(chunk)
            with self._sections.batch.fixed_size(batch_size=200) as batch:
                for text, vector in zip(chunk, vectors):
                    batch.add_object(properties={"text": text}, uuid=generate_uuid5(text),
                                     vector=[float(x) for x in vector])
            cached.update(zip(chunk, vectors.astype(np.float32)))
            if progress:
                progress(min(start + 512, len(missing)), len(missing))
        dim = next(iter(cached.values())).shape[0] if cached else 0
        return np.stack([cached[t] for t in texts]) if texts else np.zeros((0, dim), dtype=np.float32)

    def load_calibration(self, key: str) -> dict | None:
        from weaviate.util import generate_uuid5

        obj = self._calibrations.query.fetch_object_by_id(generate_uuid5(key))
        return json.loads(obj.properties["data"]) if obj else None

    def save_calibration(self, key: str, data: dict) -> None:
        from datetime import datetime, timezone

        from weaviate.util import generate_uuid5

        properties = {"key": key, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "data": json.dumps(data)}
        uuid = generate_uuid5(key)
        if self._calibrations.query.fetch_object_by_id(uuid) is not None:
            self._calibrations.data.replace(uuid=uuid, properties=properties)
        else:
            self._calibrations.data.insert(properties=properties, uuid=uuid)

    def calibrations(self) -> list[dict]:
        return sorted(({"key": o.properties["key"], "created": o.properties["created"],
                        **json.loads(o.properties["data"])} for o in self._calibrations.iterator()),
                      key=lambda c: c["created"])

    def stats(self) -> dict:
        by: dict[str, Counter] = {"label": Counter(), "phase": Counter(), "source": Counter(), "split": Counter(),
                                  "intervention": Counter()}
        total = 0
        for props in self._iterate(["label", "phase", "source", "split", "interventions"]):
            total += 1
            by["label"]["unlabelled" if props["label"] == -1 else str(props["label"])] += 1
            by["phase"][props["phase"] or "unknown"] += 1
            by["source"][props["source"]] += 1
            if props["source"] == "real":
                by["split"][props.get("split") or "pool"] += 1
            for name in set(props["interventions"] or []):
                by["intervention"][name] += 1
        return stats_from(by, total)

    def close(self) -> None:
        self._client.close()
