"""The TrialStore: its protocol and local SQLite backend, the Weaviate backend, embeddings, lexical search and ingest."""
