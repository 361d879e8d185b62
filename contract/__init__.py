"""The upload contract, below both the API and the workers: the effect names and output
formats a job may ask for, the real type of an upload and its size from the header alone,
whether it was cut short, and the batch size the queue and the engines agree on.

Torch-free (Pillow only), so the API checks an upload exactly as a worker will read it
without loading the model's libraries.
"""
