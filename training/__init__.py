"""Distilling the cutout student from IS-Net on a folder of photos (``python -m
training.distill``); ``training.build_set`` makes the project's own photos from packages.
See docs/training.md."""
