"""Where usage is born: LLM clients (OpenRouter, Vertex AI, the stub), the fallback
chain, and the ``Gateway`` that meters every call. ``service.api.proxy`` puts it behind
an OpenAI-compatible endpoint; ``service.client`` ships its events from elsewhere."""
