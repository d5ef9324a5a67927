"""Leaf helpers that import nothing of infraplan but `errors`: time, identity, redaction,
waiting, retry policy, GC pauses."""
