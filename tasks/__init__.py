"""Celery tasks: thin glue.

They parse messages, call ``workers/`` and record through ``storage/``.
"""
