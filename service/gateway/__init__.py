"""Stage 0, where usage is born: LLM clients (OpenRouter, Vertex AI, the stub), the
fallback chain, and the ``Gateway`` (``metering``) that meters every call.

It needs LUC only through ``ports`` (usage sink, budget gate, price lookup) and imports no
database code: inside LUC ``app.py`` hands it the adapters of ``service.recording``, and
``service.api.proxy`` puts it behind an OpenAI-compatible endpoint; elsewhere
``service.client`` supplies them (emitter, spool, remote budgets)."""
