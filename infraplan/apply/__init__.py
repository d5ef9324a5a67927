"""Applying a Plan: the executor walks the apply graph, recording intent before each provider call and the result right after it."""
