"""infraplan.graph without networkx gives the orders networkx gives (plans depend on them)."""

import random

import networkx as nx
import pytest

from infraplan.graph import CycleError, DepGraph, build_graph, creation_order, topological_order, with_ancestors


def _random_pair(rng: random.Random) -> tuple[DepGraph, nx.DiGraph]:
    names = [f"fleet.f{rng.randint(0, 40)}" for _ in range(rng.randint(1, 25))]
    g, h = DepGraph(), nx.DiGraph()
    for _ in range(rng.randint(0, 50)):
        if rng.random() < 0.2:
            n = rng.choice(names)
            g.add_node(n)
            h.add_node(n)
            continue
        u, v = rng.choice(names), rng.choice(names)
        if rng.random() < 0.95 and u > v:  # mostly acyclic, sometimes not
            u, v = v, u
        g.add_edge(u, v)
        h.add_edge(u, v)
    return g, h


@pytest.mark.parametrize("seed", range(300))
def test_orders_match_networkx(seed):
    g, h = _random_pair(random.Random(seed))
    assert g.nodes == list(h.nodes) and g.edges == list(h.edges)
    try:
        want = list(nx.topological_sort(h))
    except nx.NetworkXUnfeasible:
        want = None
    assert topological_order(g) == want
    try:
        want_lex = list(nx.lexicographical_topological_sort(h))
    except nx.NetworkXUnfeasible:
        with pytest.raises(CycleError) as e:
            creation_order(g)
        assert e.value.cycle[0] == e.value.cycle[-1] and len(e.value.cycle) >= 2
    else:
        assert creation_order(g) == want_lex
    targets = sorted(g)[:2] + ["fleet.missing"]
    want_anc = {t for t in targets if t in h}
    for t in want_anc.copy():
        want_anc |= nx.ancestors(h, t)
    assert with_ancestors(g, targets) == want_anc


def test_build_graph_ignores_dangling_and_self_dependencies():
    g = build_graph({"model.a": [], "fleet.b": ["model.a", "fleet.b", "model.gone"], "fleet.c": ["fleet.b"]})
    assert g.edges == [("model.a", "fleet.b"), ("fleet.b", "fleet.c")]
    assert creation_order(g) == ["model.a", "fleet.b", "fleet.c"]
    assert with_ancestors(g, ["fleet.c"]) == {"model.a", "fleet.b", "fleet.c"}


def test_cycle_is_reported_with_its_addresses():
    g = build_graph({"fleet.a": ["fleet.c"], "fleet.b": ["fleet.a"], "fleet.c": ["fleet.b"], "model.m": []})
    with pytest.raises(CycleError) as e:
        creation_order(g)
    assert set(e.value.cycle) == {"fleet.a", "fleet.b", "fleet.c"} and e.value.cycle[0] == e.value.cycle[-1]
