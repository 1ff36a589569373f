"""The HTTP service and web page: FastAPI app, request schemas, edge middleware, settings, micro-batching."""
