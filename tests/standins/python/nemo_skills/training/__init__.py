"""STAND-IN nemo_skills.training (tests only)."""
