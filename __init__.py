"""synthtrials: synthetic labelled clinical trials from a LangGraph team of agents."""

__version__ = "0.1.0"
