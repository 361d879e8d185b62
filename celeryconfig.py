"""Celery settings (flat, lowercase, as Celery's docs lay them out).

Queues: ``gpu`` for segmentation batches, ``io`` for everything that only waits on the network.
The broker is ``CUTOUT_BROKER_URL``: by default the Redis of ``CUTOUT_REDIS_URL`` (which also
holds the results), or RabbitMQ (``amqp://``) with quorum queues (docs/scaling.md).
"""

import os

from kombu import Exchange, Queue

from contract import batching
from jobs.amqp_queues import is_amqp
from jobs.queue import CLEANUP_TASK, GPU_QUEUE, IO_QUEUE, SEGMENT_TASK, WEBHOOK_TASK
from storage.redis_client import celery_redis

# The store's Redis, as Celery spells it (``redis+sentinel://`` becomes ``sentinel://…``).
cutout_redis, cutout_redis_options = celery_redis(
    os.environ.get("CUTOUT_REDIS_URL", "redis://127.0.0.1:6379/0")
)
# Set: a broker of its own (RabbitMQ, or another Redis); unset: the store's Redis is the broker.
cutout_broker_of_its_own = bool(os.environ.get("CUTOUT_BROKER_URL", "").strip())
broker_url = os.environ.get("CUTOUT_BROKER_URL", "").strip() or cutout_redis
result_backend = cutout_redis
result_backend_transport_options = cutout_redis_options
result_backend_always_retry = True  # a result written across a store failover is retried
result_expires = 24 * 3600

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

task_default_queue = IO_QUEUE
task_routes = {
    SEGMENT_TASK: {"queue": GPU_QUEUE},
    CLEANUP_TASK: {"queue": IO_QUEUE},
    WEBHOOK_TASK: {"queue": IO_QUEUE},
}

# A killed worker's jobs go back to the queue; a job is acknowledged only once recorded.
task_acks_late = True
task_reject_on_worker_lost = True
if is_amqp(broker_url):
    # Quorum queues: durable and replicated, acknowledged for real (a message comes back when
    # its consumer's channel closes, not after a timeout). Their exchanges are topic ones,
    # which Celery's native delayed delivery needs for countdowns (webhook retries): a
    # quorum queue has no global prefetch to hold ETA messages in a worker.
    task_queues = [
        Queue(name, Exchange(name, type="topic"), routing_key=name, durable=True,
              queue_arguments={"x-queue-type": "quorum"})
        for name in (GPU_QUEUE, IO_QUEUE)
    ]  # fmt: skip
    broker_transport_options = {"confirm_publish": True}  # a submit returns once it is stored
else:
    # Redelivery waits for this long after a worker vanishes; it must exceed the longest batch.
    broker_transport_options = {
        "visibility_timeout": int(os.environ.get("CUTOUT_VISIBILITY_TIMEOUT", 3600)),
        **(cutout_redis_options if broker_url == cutout_redis else {}),
    }

# Micro-batching: flush after this many jobs or this many seconds, whichever comes first. A
# lone job waits the whole interval; under a backlog batches fill by count whatever it is
# (bench/RESULTS.md, "Worker pipeline": what was measured here and what is argued for a GPU).
cutout_flush_every = batching.flush_every(os.environ)
cutout_flush_interval = float(os.environ.get("CUTOUT_FLUSH_INTERVAL", 0.02))
# Batches in flight in a gpu worker (its thread pool; the gpu commands set no --concurrency):
# one on the device while the next decodes and the last encodes and stores. The device stage
# takes one at a time (workers/pipeline.py).
cutout_batches_in_flight = int(os.environ.get("CUTOUT_BATCHES_IN_FLIGHT", 3))
worker_concurrency = cutout_batches_in_flight
# Unacknowledged messages count against the prefetch window (multiplier × concurrency), so it
# must hold every batch in flight plus one filling, or batches never fill.
worker_prefetch_multiplier = -(
    -(cutout_batches_in_flight + 1) * cutout_flush_every // cutout_batches_in_flight
)

worker_send_task_events = True
task_send_sent_event = True
broker_connection_retry_on_startup = True

# Housekeeping (`celery beat`, one process per deployment): staged inputs of ended or expired
# jobs, and followers of leaders that died before handing them over.
cutout_cleanup_interval = float(os.environ.get("CUTOUT_CLEANUP_INTERVAL", 300))
beat_schedule = {
    "cutout-cleanup": {
        "task": CLEANUP_TASK,
        "schedule": cutout_cleanup_interval,
        # A run no worker took before the next one is due is dropped, not piled up.
        "options": {"expires": cutout_cleanup_interval},
    },
}
