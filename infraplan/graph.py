"""Dependency graphs: edges point from a dependency to its dependent, so a
topological order is a creation order and its reverse a destruction order.

Planning walks these graphs on every command, so they are plain adjacency dicts
rather than networkx graphs (importing networkx costs ~0.1 s). networkx is still
used where its algorithms earn it: reporting a cycle, and the executor.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import networkx as nx


class DepGraph:
    """A directed graph as insertion-ordered successor and predecessor dicts.

    Node and edge order match a networkx DiGraph built with the same calls, so
    `to_networkx` gives the same graph for networkx's order-dependent algorithms.
    """

    __slots__ = ("succ", "pred")

    def __init__(self) -> None:
        self.succ: dict[str, dict[str, None]] = {}
        self.pred: dict[str, dict[str, None]] = {}

    def add_node(self, n: str) -> None:
        if n not in self.succ:
            self.succ[n] = {}
            self.pred[n] = {}

    def add_edge(self, u: str, v: str) -> None:
        self.add_node(u)
        self.add_node(v)
        self.succ[u][v] = None
        self.pred[v][u] = None

    def has_edge(self, u: str, v: str) -> bool:
        return v in self.succ.get(u, ())

    def __contains__(self, n: object) -> bool:
        return n in self.succ

    def __iter__(self) -> Iterator[str]:
        return iter(self.succ)

    def __len__(self) -> int:
        return len(self.succ)

    @property
    def nodes(self) -> list[str]:
        return list(self.succ)

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(u, v) for u, vs in self.succ.items() for v in vs]

    def to_networkx(self) -> nx.DiGraph:
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from(self.succ)
        g.add_edges_from(self.edges)
        return g


def build_graph(dependencies: Mapping[str, Iterable[str]]) -> DepGraph:
    """A graph with one node per address and an edge dep -> address for each dependency
    that is itself a node (dangling ones are the config loader's business)."""
    g = DepGraph()
    for addr in dependencies:
        g.add_node(addr)
    for addr, deps in dependencies.items():
        for dep in deps:
            if dep in dependencies and dep != addr:
                g.add_edge(dep, addr)
    return g


def find_cycle(g: DepGraph) -> list[str] | None:
    """One cycle as a list of addresses (first repeated at the end), or None."""
    import networkx as nx

    try:
        edges = nx.find_cycle(g.to_networkx())
    except nx.NetworkXNoCycle:
        return None
    return [u for u, _ in edges] + [edges[0][0]]


class CycleError(ValueError):
    """The graph has a cycle; `cycle` lists it (first address repeated at the end)."""

    def __init__(self, cycle: list[str]):
        super().__init__("dependency cycle: " + " -> ".join(cycle))
        self.cycle = cycle


def creation_order(g: DepGraph) -> list[str]:
    """Topological order, ties broken by address so plans read the same every time."""
    indegree = {n: len(p) for n, p in g.pred.items()}
    ready = [n for n, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        n = heapq.heappop(ready)
        order.append(n)
        for child in g.succ[n]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, child)
    if len(order) < len(indegree):
        raise CycleError(find_cycle(g) or [])
    return order


def topological_order(g: DepGraph) -> list[str] | None:
    """Kahn's order in generations, each in insertion order (networkx's `topological_sort`
    order); None if the graph has a cycle."""
    indegree = {n: len(p) for n, p in g.pred.items()}
    generation = [n for n, d in indegree.items() if d == 0]
    order: list[str] = []
    while generation:
        order += generation
        after: list[str] = []
        for n in generation:
            for child in g.succ[n]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    after.append(child)
        generation = after
    return order if len(order) == len(indegree) else None


def with_ancestors(g: DepGraph, targets: Iterable[str]) -> set[str]:
    """The targets and everything they depend on (Terraform's -target semantics)."""
    out: set[str] = set()
    stack = [t for t in targets if t in g]
    while stack:
        n = stack.pop()
        if n not in out:
            out.add(n)
            stack.extend(p for p in g.pred[n] if p not in out)
    return out


def to_dot(g: DepGraph, labels: Mapping[str, str] | None = None) -> str:
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
