"""The serving runtime both halves share: model card, engines, task encode/decode, ONNX graph rewrites, batching.

It imports neither the HTTP stack (fastapi, starlette, uvicorn) nor torch/transformers; `service.api` (the HTTP
layer) and `compression/` depend on it, never the reverse (import-linter contracts in pyproject.toml).
"""
