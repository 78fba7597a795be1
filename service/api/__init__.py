"""The HTTP layer: the FastAPI app, the v1 routes, the Open Inference Protocol (v2) and uvicorn's server."""
