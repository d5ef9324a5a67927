import pytest

from infraplan.config.expressions import INVALID
from infraplan.config.variables import convert, resolve_variables, sensitive_strings
from infraplan.diagnostics import Location
from infraplan.models.config import VariableBlock


def decls(**kw):
    return {name: VariableBlock.model_validate(spec) for name, spec in kw.items()}


def test_precedence_default_env_file_cli(tmp_path):
    d = decls(a={"default": "def"}, b={"default": "def"}, c={"default": "def"}, e={"default": "def"})
    f1 = tmp_path / "one.yaml"
    f1.write_text("b: file1\nc: file1\n")
    f2 = tmp_path / "two.json"
    f2.write_text('{"c": "file2"}')
    env = {"INFRAPLAN_VAR_a": "env", "INFRAPLAN_VAR_b": "env", "INFRAPLAN_VAR_e": "env", "OTHER": "x"}
    values, diags = resolve_variables(d, var_args=["e=cli1", "e=cli2"], var_files=[f1, f2], env=env)
    assert diags == []
    assert values == {"a": "env", "b": "file1", "c": "file2", "e": "cli2"}


@pytest.mark.parametrize(
    "type_, text, expected",
    [
        ("number", "42", 42),
        ("number", "1.5e3", 1500.0),
        ("bool", "true", True),
        ("bool", "0", False),
        ("list", '["us", "eu"]', ["us", "eu"]),
        ("list", "[us, eu]", ["us", "eu"]),
        ("map", '{"a": 1}', {"a": 1}),
        ("string", "a=b", "a=b"),
        ("any", "[1]", "[1]"),
    ],
)
def test_cli_text_is_converted(type_, text, expected):
    values, diags = resolve_variables(decls(v={"type": type_}), var_args=[f"v={text}"])
    assert diags == []
    assert values["v"] == expected
    assert type(values["v"]) is type(expected)


def test_conversion_errors():
    with pytest.raises(ValueError, match="expected a number"):
        convert("abc", "number", text=True)
    with pytest.raises(ValueError, match="expected a bool"):
        convert("maybe", "bool", text=True)
    with pytest.raises(ValueError, match="expected a list"):
        convert("a,b", "list", text=True)
    assert convert(1234567, "string") == "1234567"


def test_required_unknown_and_malformed_cli_vars():
    locs = {("variable", "token"): Location("main.yaml", 2, 3)}
    values, diags = resolve_variables(
        decls(token={"type": "string"}, region={"default": "us"}),
        var_args=["regoin=eu", "novalue"],
        locate=locs.get,
    )
    by_summary = {d.summary: d for d in diags}
    assert values["token"] is INVALID
    req = next(d for d in diags if "required" in d.summary)
    assert "INFRAPLAN_VAR_token" in req.summary and req.location == Location("main.yaml", 2, 3)
    assert req.path == "variable.token"
    assert any("no variable 'regoin' is declared; did you mean 'region'?" in s for s in by_summary)
    assert any("--var expects NAME=VALUE, got 'novalue'" in s for s in by_summary)
    assert len(diags) == 3


def test_bad_env_value_is_reported_with_its_source():
    values, diags = resolve_variables(decls(n={"type": "number"}), env={"INFRAPLAN_VAR_n": "many"})
    assert values["n"] is INVALID
    assert diags[0].summary == "variable 'n': expected a number, got 'many' (from INFRAPLAN_VAR_n)"


def test_var_file_errors_are_located(tmp_path):
    f = tmp_path / "prod.yaml"
    f.write_text("n: 1\nnn: 2\n")
    values, diags = resolve_variables(decls(n={"type": "number"}), var_files=[str(f)])
    assert values["n"] == 1
    (warn,) = diags
    assert warn.severity == "warning" and "did you mean 'n'" in warn.summary
    assert warn.location == Location(str(f), 2, 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("n: [1\n")
    _, diags = resolve_variables(decls(n={"type": "number"}), var_files=[str(bad), str(tmp_path / "missing.yaml")])
    assert diags[0].location.file == str(bad) and "YAML syntax error" in diags[0].summary
    assert "cannot read var file" in diags[1].summary


def test_validation_rules_use_error_message_at_rule():
    rules = [
        {"regex": "^[0-9a-f]{7,40}$", "error_message": "must be a sha"},
        {"min_length": 8, "error_message": "too short"},
    ]
    d = decls(rev={"type": "string", "validation": rules}, n={"type": "number", "validation": [
        {"min": 1, "max": 8, "error_message": "1..8"}, {"allowed": [1, 2, 4, 8], "error_message": "power of two"}]})
    locs = {("variable", "rev", "validation", 0): Location("v.yaml", 3, 7), ("variable", "rev", "validation", 1): Location("v.yaml", 4, 7)}
    values, diags = resolve_variables(d, var_args=["rev=xyz", "n=3"], locate=locs.get)
    assert [(x.summary, x.location, x.path) for x in diags] == [
        ("must be a sha", Location("v.yaml", 3, 7), "variable.rev.validation[0]"),
        ("too short", Location("v.yaml", 4, 7), "variable.rev.validation[1]"),
        ("power of two", None, "variable.n.validation[1]"),
    ]
    values, diags = resolve_variables(d, var_args=["rev=a1b2c3d4", "n=8"])
    assert diags == [] and values == {"rev": "a1b2c3d4", "n": 8}


def test_null_and_nullable():
    values, diags = resolve_variables(decls(a={"default": None, "nullable": True}, b={"type": "string", "nullable": False, "default": None}))
    assert values["a"] is None
    assert values["b"] is INVALID and "required" in diags[0].summary


def test_sensitive_strings():
    assert sensitive_strings("s3cret") == {"s3cret"}
    assert sensitive_strings("") == set()
    assert sensitive_strings({"k": "v1", "n": 42}) >= {"v1", "42"}
