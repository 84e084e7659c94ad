"""STAND-IN nemo_skills.conversion (tests only)."""
