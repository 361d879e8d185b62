"""What the service says about itself: Prometheus metrics and their exposition, queue
statistics read from the broker, GPU readings, structured JSON logs, the cost estimate.

Imports none of the service's other packages: everything here is told what to record.
"""
