"""OpenAI's embeddings API (`POST /v1/embeddings`) beside the v1 and v2 routes, for OpenAI's clients unchanged."""

from service.api.openai.routes import router

__all__ = ["router"]
