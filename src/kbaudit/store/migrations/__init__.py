"""The schema's history, as Alembic revisions (``versions/``), and what they need of kbaudit
frozen as it was when each was written (``frozen/``)."""
