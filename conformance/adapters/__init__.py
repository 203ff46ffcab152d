"""Adapters: the one place where the checker side drives an implementation."""
