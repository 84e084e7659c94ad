"""TEST STAND-INS for the GPU-side services (trtllm-serve's OpenAI API, the NeMo-Skills sandbox)."""
