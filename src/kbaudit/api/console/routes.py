"""The web console at ``/console``: server-rendered pages over the same services as the JSON
API, with the powers of the API key behind the session and no others. Every page stands
behind the guard (``guard.py``); ``rendering.py`` renders them."""

from __future__ import annotations

from fastapi import APIRouter

from kbaudit.api.console import admin, exports, records, signing_in
from kbaudit.api.console.rendering import static_files

router = APIRouter()
for pages in (signing_in, records, exports, admin):
    router.include_router(pages.router)

__all__ = ["router", "static_files"]
