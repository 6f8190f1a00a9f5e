"""Classifiers, experiments, LLM judge, fidelity/diversity/privacy, report."""
