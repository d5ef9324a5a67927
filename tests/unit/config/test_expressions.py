import pytest

from infraplan.config.expressions import (
    UNKNOWN,
    EvalContext,
    ExpressionError,
    Reference,
    evaluate,
    has_deferred,
    parse_template,
    references,
    resolve_deferred,
    unescape,
)


def ctx(**kw):
    base = dict(
        variables={"n": 3, "regions": ["us", "eu"], "name": "x", "m": {"a": {"b": 1}}, "lit": "$${raw}"},
        locals={"team": "ml", "up": "${fleet.chat.endpoint}"},
        models={"llama": {"revision": "abc", "name": "llama", "compliance": {"license": "l3"}}},
    )
    base.update(kw)
    return EvalContext(**base)


@pytest.mark.parametrize(
    "text, ref",
    [
        ("var.x", Reference("var", "x")),
        ("var.m.a[0]", Reference("var", "m", None, ("a", 0))),
        ("local.team", Reference("local", "team")),
        ("each.key", Reference("each", "key")),
        ("each.value.a.b", Reference("each", "value", None, ("a", "b"))),
        ("model.llama.revision", Reference("model", "llama", None, ("revision",))),
        ('fleet.chat["us"].endpoint', Reference("fleet", "chat", "us", ("endpoint",))),
        ("fleet.chat[0].port", Reference("fleet", "chat", 0, ("port",))),
        (" fleet.chat.endpoint ", Reference("fleet", "chat", None, ("endpoint",))),
    ],
)
def test_parse_references(text, ref):
    (parsed,) = parse_template("${" + text + "}").refs
    assert parsed == ref
    assert parse_template("${" + str(parsed) + "}").refs == [ref]  # str() is canonical syntax


def test_reference_addresses():
    ref = parse_template('${fleet.regional["us"].endpoint}').single
    assert ref.address == "fleet.regional"
    assert ref.instance_address == 'fleet.regional["us"]'
    assert parse_template("${each.value.a}").single.address == "each"


@pytest.mark.parametrize(
    "text, message",
    [
        ("${var.n + 1}", "invalid expression"),
        ("${__import__('os')}", "invalid expression"),
        ("${foo.bar}", "'foo' is not one of"),
        ("${vars.x}", "did you mean 'var'"),
        ("${each.index}", "use each.key or each.value"),
        ("${model.llama}", "needs an attribute"),
        ("${fleet.chat}", "needs an attribute"),
        ("${var}", "needs a name"),
        ("abc ${var.x", "unterminated"),
    ],
)
def test_rejects_anything_else(text, message):
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace("+", r"\+")):
        parse_template(text)


def test_single_reference_keeps_type():
    assert evaluate("${var.n}", ctx()) == 3
    assert evaluate("${var.regions}", ctx()) == ["us", "eu"]
    assert evaluate("${var.m.a}", ctx()) == {"b": 1}
    assert evaluate({"x": ["${var.n}", "n=${var.n}"]}, ctx()) == {"x": [3, "n=3"]}


def test_formatting_into_strings():
    c = ctx(variables={"f": 8.0, "b": True, "l": [1, "a"], "z": None})
    assert evaluate("${var.f}/${var.b}/${var.l}", c) == '8/true/[1, "a"]'
    with pytest.raises(ExpressionError, match="null"):
        evaluate("x${var.z}", c)


def test_model_and_each_references():
    c = ctx(each=("us", {"zone": "a"}))
    assert evaluate("${model.llama.compliance.license}-${each.key}-${each.value.zone}", c) == "l3-us-a"
    with pytest.raises(ExpressionError, match="no attribute 'zon'; did you mean 'zone'"):
        evaluate("${each.value.zon}", c)
    with pytest.raises(ExpressionError, match="only be used in a block with for_each"):
        evaluate("${each.key}", ctx())
    with pytest.raises(ExpressionError, match="unknown variable 'var.nme'; did you mean 'name'"):
        evaluate("${var.nme}", ctx())


def test_partial_evaluation_defers_fleet_references():
    value = {"a": "${fleet.chat.endpoint}", "b": "${local.team}@${fleet.chat.port}", "c": "${local.up}"}
    out = evaluate(value, ctx())
    assert out == {"a": "${fleet.chat.endpoint}", "b": "ml@${fleet.chat.port}", "c": "${fleet.chat.endpoint}"}
    assert has_deferred(out) and not has_deferred({"b": "ml", "n": 3})
    assert {r.address for r in references(out)} == {"fleet.chat"}
    with pytest.raises(ExpressionError, match="only known after apply"):
        evaluate("${fleet.chat.endpoint}", ctx(), defer=())


def test_substituted_text_is_escaped_not_reparsed():
    c = ctx(variables={"tricky": "${fleet.x.y}", "n": 1})
    out = evaluate({"whole": "${var.tricky}", "mixed": "a-${var.tricky}-${fleet.chat.port}"}, c)
    # the variable's literal ${ is escaped so it is not taken for a reference
    assert out["mixed"] == "a-$${fleet.x.y}-${fleet.chat.port}"
    assert out["whole"] == "$${fleet.x.y}"
    assert not has_deferred(out["whole"])
    seen = []
    final = resolve_deferred(out, lambda ref: seen.append(str(ref)) or 8080)
    assert seen == ["fleet.chat.port"]
    assert final == {"whole": "${fleet.x.y}", "mixed": "a-${fleet.x.y}-8080"}


def test_dollar_dollar_escape():
    assert parse_template("cost: $${var.x}").parts == ("cost: ${var.x}",)
    out = evaluate("$${not.a.ref} ${var.name}", ctx())
    assert out == "$${not.a.ref} x"
    assert unescape(out) == "${not.a.ref} x"
    assert references("$${var.x}") == set()


def test_resolve_deferred_with_unknown():
    value = {"url": "http://${fleet.chat.endpoint}/v1", "port": "${fleet.chat.port}", "list": ["${fleet.b.x}", "k"]}
    known = {"endpoint": "127.0.0.1:9000", "port": 9000}

    def lookup(ref):
        return known[ref.path[0]] if ref.name == "chat" else UNKNOWN

    out = resolve_deferred(value, lookup)
    assert out == {"url": "http://127.0.0.1:9000/v1", "port": 9000, "list": [UNKNOWN, "k"]}
    assert resolve_deferred("a-${fleet.b.x}", lookup) is UNKNOWN


def test_on_error_collects_every_problem():
    errors = []
    out = evaluate({"a": "${var.nope}", "b": ["${local.nope}", "ok"]}, ctx(), on_error=lambda p, e: errors.append(p))
    assert errors == [("a",), ("b", 0)]
    assert out["b"][1] == "ok"
