"""AsyncTaskFlow server: a FastAPI API and asyncio workers over Redis."""

__version__ = "0.1.0"
