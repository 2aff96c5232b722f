"""`rlvr eval`: benchmarks, generation (hf, vLLM), grading (math-verify) and scoring (avg@k, pass@k, maj@k)."""
