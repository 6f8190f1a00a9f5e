"""Trial schema, readers and client, TrialStore, embeddings, chat-model factory, checks."""
