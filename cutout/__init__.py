"""The ``cutout`` command line: process photos in-process, or submit them to a running service.

``cutout.client`` is the service's HTTP client; the command line and the tests both use it.
"""
