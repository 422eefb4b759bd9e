"""OpenAI-compatible servers (vLLM, llama-server, Ollama, OpenAI), named as providers in config.toml."""
