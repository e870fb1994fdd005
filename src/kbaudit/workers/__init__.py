"""Task dispatch and the processes that run exports: Huey tasks are three-line wrappers over
the export services; the rows in the database stay the truth."""
