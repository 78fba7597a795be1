"""The online half of oberta: a FastAPI server that serves exported encoders on CPUs.

Serving imports only numpy, onnxruntime, deepsparse, tokenizers, fastapi, pydantic, prometheus_client and yaml;
never torch or transformers.
"""
