"""Everything that runs on a worker: image I/O, models, engines, the batch pipeline, effects.

Knows nothing of Celery or HTTP.
"""
