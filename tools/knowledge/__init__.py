"""What the critic and the reasoner know of the grounding trials: domain statistics, coherence, registry evidence, the deterministic checks and their calibration."""
