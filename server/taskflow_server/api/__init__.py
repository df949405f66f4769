"""The HTTP API: ``create_app`` builds the FastAPI app; ``ApiServer`` serves it with uvicorn."""

from taskflow_server.api.app import ApiServer, create_app

__all__ = ["ApiServer", "create_app"]
