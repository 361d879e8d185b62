"""A job's life, with no Flask, Celery or torch: its record and the one place that reads and
writes it, submission, dispatch, running a batch, the end and what follows it (metrics, the
webhook), cancel, cleanup, and the queue the jobs travel through.

The API, the Celery tasks and the command line call into it; it uses ``storage/`` for bytes
and ``observability/`` to say what happened.
"""
