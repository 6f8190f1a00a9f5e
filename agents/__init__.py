"""Agents of the generation graph: retriever, reasoner, writer, critic (one node each)."""
