"""Celery only: the app, the tasks and the worker's signals. Thin glue: a task parses its
message, calls ``jobs/`` (and ``workers/``) and declares its retries."""
