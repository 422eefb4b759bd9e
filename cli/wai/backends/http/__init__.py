"""Chat over HTTP, shared by the Workers AI and OpenAI-compatible backends: SSE, chunks, retries."""
