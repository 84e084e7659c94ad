"""STAND-IN `nemo_skills` package (tests only).

Holds stand-ins for the NeMo-Skills modules the launcher's jobs run with ``python -m``,
e.g. ``nemo_skills.conversion.hf_to_trtllm_quantize`` and
``nemo_skills.training.train_redrafter``. See tests/standins/README.md.
"""

STANDIN = True
