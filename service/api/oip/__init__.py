"""The Open Inference Protocol (KServe v2) REST API beside the v1 routes, binary tensor data extension included."""

from service.api.oip.codec import HEADER_LENGTH
from service.api.oip.routes import health_router, infer_router, models_router

__all__ = ["HEADER_LENGTH", "health_router", "infer_router", "models_router"]
