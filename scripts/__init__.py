"""The command line (`synthtrials ...`) and example scripts."""
