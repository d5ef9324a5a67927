"""The `null` provider: resources kept only in state, for tests and benchmarks."""
