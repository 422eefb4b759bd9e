"""llama.cpp on a local GGUF file."""
