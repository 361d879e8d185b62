"""A finished job's webhook: settings, Standard Webhooks signing, the SSRF-guarded outbound
client, and the delivery attempts with their retries (``delivery.py``)."""
