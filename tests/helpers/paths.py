"""Where things are in the repository."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
HELPERS = TESTS / "helpers"
FIXTURES = TESTS / "fixtures"
EXAMPLES = REPO / "examples"
BENCHMARKS = REPO / "benchmarks"
