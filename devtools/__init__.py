"""Helpers for development and the tests, never imported by the service itself."""
