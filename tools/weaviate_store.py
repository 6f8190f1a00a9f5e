"""TrialStore on a Weaviate server, cluster or cloud (weaviate-client v4).

One collection (default ``Trial``) holds one object per trial, keyed by a UUID derived from the
NCT id (so re-ingest overwrites, never duplicates), with our own embeddings as its vectors
(self-provided: the server needs no vectorizer module). Search is near-vector, BM25 or Weaviate's
hybrid, all with filters on label, phase, source, intervention and condition.

Locations: ``http://host:8080`` (gRPC on 50051, or ``?grpc=PORT``), ``https://...``, or
``weaviate+https://CLUSTER_URL`` for Weaviate Cloud with the API key in ``WEAVIATE_API_KEY``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from urllib.parse import parse_qs, urlparse

import numpy as np

from synthtrials.tools.embeddings import DEFAULT_EMBEDDING_MODEL, get_embeddings
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.store import (
    DRUG_TYPES, EligibilityRule, EligibleIntervention, NameKey, ProgressFn, SearchHit, SearchMode, TrialFilter,
    UpsertReport, eligible_from_counts, stats_from, trial_index_fields,
)
from synthtrials.tools.trial import Trial, render_for_classifier, render_for_embedding


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


def trial_properties(trial: Trial) -> dict:
    interventions, conditions = trial_index_fields(trial)
    return {
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
        if not self._client.collections.exists(collection):
            text = dict(data_type=DataType.TEXT)
            keyword = dict(data_type=DataType.TEXT, tokenization=Tokenization.FIELD)
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
                    Property(name="interventions", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD),
                    Property(name="interventions_lowercase", data_type=DataType.TEXT_ARRAY,
                             tokenization=Tokenization.FIELD),
                    Property(name="intervention_types", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD),
                    Property(name="conditions", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD),
                ],
            )
        self._collection = self._client.collections.get(collection)

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
        if flt.intervention:
            parts.append(Filter.by_property("interventions").contains_any([flt.intervention]))
        if flt.condition:
            parts.append(Filter.by_property("conditions").contains_any([flt.condition]))
        if flt.exclude_ids:
            parts.append(Filter.by_property("nct_id").contains_none(sorted(flt.exclude_ids)))
        if not parts:
            return None
        return Filter.all_of(parts) if len(parts) > 1 else parts[0]

    def upsert(self, trials: Sequence[Trial], progress: ProgressFn | None = None,
               vectors: np.ndarray | None = None) -> UpsertReport:
        from weaviate.util import generate_uuid5

        report = UpsertReport(ids=[t.nct_id for t in trials])
        if not trials:
            return report
        if vectors is None:
            vectors = self.embeddings.embed_array([render_for_embedding(t) for t in trials])
            report.embedded = len(trials)
        with self._collection.batch.fixed_size(batch_size=200) as batch:
            for i, (trial, vector) in enumerate(zip(trials, vectors)):
                batch.add_object(properties=trial_properties(trial), uuid=generate_uuid5(trial.nct_id),
                                 vector=[float(x) for x in vector])
                if progress and (i + 1) % 200 == 0:
                    progress(i + 1, len(trials))
        failed = self._collection.batch.failed_objects
        if failed:
            raise ConfigError(f"{self.location}: Weaviate rejected {len(failed)} objects ({failed[0].message[:160]})")
        report.inserted = len(trials)
        return report

    def get(self, nct_id: str) -> Trial | None:
        from weaviate.util import generate_uuid5

        obj = self._collection.query.fetch_object_by_id(generate_uuid5(nct_id))
        return Trial.model_validate_json(obj.properties["record"]) if obj else None

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

    def intervention_label_counts(self, rule: EligibilityRule = "first",
                                  names: NameKey = "normalized") -> dict[str, Counter]:
        key = "interventions" if names == "normalized" else "interventions_lowercase"
        counts: dict[str, Counter] = {}
        for props in self._iterate([key, "intervention_types", "label", "source"]):
            if props["label"] not in (0, 1) or props["source"] != "real":
                continue
            drugs = [n for n, t in zip(props[key] or [], props["intervention_types"] or []) if t in DRUG_TYPES and n]
            chosen = drugs[:1] if rule == "first" else sorted(set(drugs))
            for name in chosen:
                counts.setdefault(name, Counter())[int(props["label"])] += 1
        return counts

    def eligible(self, k: int = 3, rule: EligibilityRule = "first",
                 names: NameKey = "normalized") -> list[EligibleIntervention]:
        return eligible_from_counts(self.intervention_label_counts(rule, names), k)

    def stats(self) -> dict:
        by: dict[str, Counter] = {"label": Counter(), "phase": Counter(), "source": Counter(), "intervention": Counter()}
        total = 0
        for props in self._iterate(["label", "phase", "source", "interventions"]):
            total += 1
            by["label"]["unlabelled" if props["label"] == -1 else str(props["label"])] += 1
            by["phase"][props["phase"] or "unknown"] += 1
            by["source"][props["source"]] += 1
            for name in set(props["interventions"] or []):
                by["intervention"][name] += 1
        return stats_from(by, total)

    def close(self) -> None:
        self._client.close()
