"""`python -m synthtrials.scripts.cli ...`: the same as the `synthtrials` console command."""

from synthtrials.scripts.cli import main

if __name__ == "__main__":
    main()
