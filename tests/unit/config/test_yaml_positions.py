from infraplan.config.yaml_positions import format_path, load_yaml, parse_path
from infraplan.diagnostics import Location


def test_values_and_positions():
    text = "fleet:\n  chat:\n    replicas: 2\n    labels: {a: 'x'}\n    ports: [1, 2]\n"
    value, pos, diags = load_yaml(text, "f.yaml")
    assert diags == []
    assert value == {"fleet": {"chat": {"replicas": 2, "labels": {"a": "x"}, "ports": [1, 2]}}}
    assert pos.key_at(("fleet", "chat", "replicas")) == Location("f.yaml", 3, 5)
    assert pos.value_at(("fleet", "chat", "replicas")) == Location("f.yaml", 3, 15)
    assert pos.value_at(("fleet", "chat", "ports", 1)) == Location("f.yaml", 5, 16)
    # a missing path falls back to its nearest ancestor's key
    assert pos.nearest(("fleet", "chat", "nope", "deeper")) == Location("f.yaml", 2, 3)
    assert pos.nearest(("fleet", "chat", "replicas"), key=True) == Location("f.yaml", 3, 5)


def test_keys_stay_strings_and_values_are_typed():
    value, _, _ = load_yaml("on: yes\n1: 1.5\nnull: ~\nd: 2024-01-02\n", "f.yaml")
    assert value == {"on": True, "1": 1.5, "null": None, "d": "2024-01-02"}


def test_duplicate_key_is_an_error_and_first_wins():
    value, _, diags = load_yaml("a:\n  x: 1\n  x: 2\n", "f.yaml")
    assert value == {"a": {"x": 1}}
    assert len(diags) == 1
    d = diags[0]
    assert "duplicate key 'x'" in d.summary and "f.yaml:2:3" in d.summary
    assert d.location == Location("f.yaml", 3, 3)
    assert d.path == "a.x"


def test_syntax_error_is_located():
    value, _, diags = load_yaml("a:\n  b: [1, 2\nc: 3\n", "bad.yaml")
    assert value is None
    assert len(diags) == 1
    assert diags[0].summary.startswith("YAML syntax error")
    assert diags[0].location.file == "bad.yaml" and diags[0].location.line == 3


def test_empty_document_and_merge_keys():
    assert load_yaml("", "e.yaml")[0] is None
    value, _, diags = load_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n", "m.yaml")
    assert diags == []
    assert value["c"] == {"x": 1, "y": 3}


def test_unknown_tag_is_reported():
    _, _, diags = load_yaml("a: !python/object 1\n", "t.yaml")
    assert "unsupported YAML tag" in diags[0].summary
    assert diags[0].location == Location("t.yaml", 1, 4)


def test_path_round_trip():
    path = ("variable", "x", "validation", 0, "regex")
    assert format_path(path) == "variable.x.validation[0].regex"
    assert parse_path(format_path(path)) == path
    odd = ("fleet", "a", "labels", "app.kubernetes.io/name")
    assert format_path(odd) == 'fleet.a.labels["app.kubernetes.io/name"]'
    assert parse_path(format_path(odd)) == odd
