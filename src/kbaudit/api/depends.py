"""Named dependencies of the routes, so that a route's signature reads as what it needs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from kbaudit.filters import RecordFilters

# The window and filters as the contract's query parameters, validated by the one
# declaration the export body and the console's forms share.
Filters = Annotated[RecordFilters, Query()]
