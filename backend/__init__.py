"""The built-in Open311 GeoReport v2 ticket backend (FastAPI + SQLAlchemy).

`create_backend_app(settings)` serves GeoReport v2 at `/open311/v2` (the contract's `{base}/open311/v2`);
`doorstep backend` runs it alone. See docs/tickets.md.
"""

from backend.api import Backend, BackendSettings, create_backend_app

__all__ = ["Backend", "BackendSettings", "create_backend_app"]
