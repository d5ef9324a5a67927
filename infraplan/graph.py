"""Dependency graphs (networkx): edges point from a dependency to its dependent,
so a topological order is a creation order and its reverse a destruction order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # networkx is imported where a graph is built: plans with nothing to do skip it
    import networkx as nx


def build_graph(dependencies: Mapping[str, Iterable[str]]) -> nx.DiGraph:
    """A graph with one node per address and an edge dep -> address for each dependency
    that is itself a node (dangling ones are the config loader's business)."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(dependencies)
    for addr, deps in dependencies.items():
        for dep in deps:
            if dep in dependencies and dep != addr:
                g.add_edge(dep, addr)
    return g


def find_cycle(g: nx.DiGraph) -> list[str] | None:
    """One cycle as a list of addresses (first repeated at the end), or None."""
    import networkx as nx

    try:
        edges = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return None
    return [u for u, _ in edges] + [edges[0][0]]


class CycleError(ValueError):
    """The graph has a cycle; `cycle` lists it (first address repeated at the end)."""

    def __init__(self, cycle: list[str]):
        super().__init__("dependency cycle: " + " -> ".join(cycle))
        self.cycle = cycle


def creation_order(g: nx.DiGraph) -> list[str]:
    """Topological order, ties broken by address so plans read the same every time."""
    import networkx as nx

    try:
        return list(nx.lexicographical_topological_sort(g))
    except nx.NetworkXUnfeasible:
        raise CycleError(find_cycle(g) or []) from None


def with_ancestors(g: nx.DiGraph, targets: Iterable[str]) -> set[str]:
    """The targets and everything they depend on (Terraform's -target semantics)."""
    import networkx as nx

    out: set[str] = set()
    for t in targets:
        if t in g:
            out.add(t)
            out |= nx.ancestors(g, t)
    return out


def to_dot(g: nx.DiGraph, labels: Mapping[str, str] | None = None) -> str:
    """Graphviz DOT text; edges drawn dependent -> dependency as Terraform does."""
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["digraph infraplan {", "  rankdir = RL;", "  node [shape = box];"]
    for n in sorted(g.nodes):
        label = (labels or {}).get(n)
        lines.append(f"  {q(n)}" + (f" [label = {q(label)}]" if label else "") + ";")
    for u, v in sorted(g.edges):
        lines.append(f"  {q(v)} -> {q(u)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
