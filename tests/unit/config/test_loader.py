import textwrap

import pytest

from infraplan.config import UNKNOWN, has_deferred, load_config, resolve_deferred, validate_config
from infraplan.diagnostics import Location
from infraplan.errors import ConfigError
from infraplan.models.config import FleetBlock, ModelBlock

VARS = """\
variable:
  revision: {type: string, default: "a1b2c3d", validation: [{regex: "^[0-9a-f]{7,40}$", error_message: "revision must be a commit sha"}]}
  hf_token: {type: string, default: "", sensitive: true}
  regions: {type: list, default: [us, eu]}
locals:
  team: ml-platform
  name: "chat-${var.revision}"
"""

RESOURCES = """\
model:
  llama:
    source: hf://meta-llama/Llama-3.1-8B-Instruct
    revision: ${var.revision}
    served_name: llama-3.1-8b
    parameters: 8.03e9
    dtype: bfloat16
    owner: ${local.team}
    compliance: {license: llama3.1}
fleet:
  chat:
    provider: local
    model: model.llama
    replicas: 2
    engine: {type: sim, args: {context_length: 8192}, sim: {ttft_ms: 20}, env: {HF_TOKEN: "${var.hf_token}"}}
    labels: {revision: "${model.llama.revision}", team: "${local.team}", name: "${local.name}"}
  regional:
    for_each: ${var.regions}
    model: model.llama
    region: ${each.key}
    labels: {upstream: "${fleet.chat.endpoint}"}
    depends_on: [fleet.chat]
output:
  endpoint: {value: "${fleet.chat.endpoint}"}
"""


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    """Write files into ./cfg and chdir so locations read cfg/<file>."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg").mkdir()

    def write(**files):
        for name, text in files.items():
            (tmp_path / "cfg" / name.replace("_yaml", ".yaml").replace("_yml", ".yml")).write_text(textwrap.dedent(text))
        return "cfg"

    return write


def errors(path, **kw):
    config, diags = validate_config(path, **kw)
    assert config is None
    return [d for d in diags if d.severity == "error"]


def only(path, **kw):
    errs = errors(path, **kw)
    assert len(errs) == 1, [e.one_line() for e in errs]
    return errs[0]


def test_good_multi_file_config(cfg):
    path = cfg(a_vars_yaml=VARS, b_resources_yml=RESOURCES)
    c = load_config(path, var_args=["hf_token=hf_abc123"])
    assert [f.name for f in c.files] == ["a_vars.yaml", "b_resources.yml"]
    assert c.variables == {"revision": "a1b2c3d", "hf_token": "hf_abc123", "regions": ["us", "eu"]}
    assert c.locals == {"team": "ml-platform", "name": "chat-a1b2c3d"}
    assert list(c.models) == ["model.llama"]
    assert list(c.fleets) == ["fleet.chat", 'fleet.regional["us"]', 'fleet.regional["eu"]']

    llama = c.models["model.llama"]
    assert isinstance(llama.block, ModelBlock) and llama.block.owner == "ml-platform"
    assert llama.block.revision == "a1b2c3d" and llama.depends_on == set()
    assert llama.location == Location("cfg/b_resources.yml", 2, 3)

    chat = c.fleets["fleet.chat"]
    assert isinstance(chat.block, FleetBlock)
    assert chat.block.labels == {"revision": "a1b2c3d", "team": "ml-platform", "name": "chat-a1b2c3d"}
    assert chat.block.engine.env == {"HF_TOKEN": "hf_abc123"}
    assert chat.depends_on == {"model.llama"} and chat.key is None

    us = c.fleets['fleet.regional["us"]']
    assert (us.kind, us.name, us.key, us.block.region, us.block.for_each) == ("fleet", "regional", "us", "us", None)
    assert us.block.labels == {"upstream": "${fleet.chat.endpoint}"} and has_deferred(us.block.labels)
    assert us.depends_on == {"model.llama", "fleet.chat"}

    out = c.outputs["endpoint"]
    assert out.value == "${fleet.chat.endpoint}" and out.depends_on == {"fleet.chat"}
    assert resolve_deferred(out.value, lambda ref: "127.0.0.1:30000") == "127.0.0.1:30000"
    assert resolve_deferred(us.block.labels, lambda ref: UNKNOWN) == {"upstream": UNKNOWN}

    assert c.sensitive_values == {"hf_abc123"}
    assert c.sensitive_paths == {"fleet.chat.engine.env.HF_TOKEN"}
    assert c.location_of("fleet.chat.engine.args.context_length") == Location("cfg/b_resources.yml", 15, 48)
    assert c.location_of("local.team") == Location("cfg/a_vars.yaml", 6, 9)


def test_single_file_and_literal_for_each_map(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "one.yaml").write_text(textwrap.dedent("""\
        model:
          m: {source: hf://a/b}
        fleet:
          f:
            for_each: {small: {n: 1}, big: {n: 4}}
            model: model.m
            replicas: ${each.value.n}
            labels: {size: "${each.key}", other: '${fleet.g["x"].endpoint}'}
          g: {model: model.m, for_each: [x]}
    """))
    c = load_config("one.yaml")
    assert c.root.resolve() == tmp_path and [f.name for f in c.files] == ["one.yaml"]
    assert {a: r.block.replicas for a, r in c.fleets.items()} == {'fleet.f["small"]': 1, 'fleet.f["big"]': 4, 'fleet.g["x"]': 1}
    assert c.fleets['fleet.f["big"]'].block.labels["size"] == "big"
    assert c.fleets['fleet.f["big"]'].depends_on == {"model.m", "fleet.g"}


def test_digest_is_stable_and_tracks_files_and_values(cfg):
    path = cfg(a_yaml=VARS, b_yaml=RESOURCES)
    d1 = load_config(path).digest
    assert load_config(path).digest == d1
    assert load_config(path, var_args=["revision=abcdef0"]).digest != d1
    cfg(b_yaml=RESOURCES.replace("replicas: 2", "replicas: 3"))
    assert load_config(path).digest != d1


def test_malformed_yaml_and_non_mapping_file(cfg):
    path = cfg(a_yaml="model:\n  m: {source: x\n", b_yaml="- 1\n- 2\n")
    errs = errors(path)
    assert [(e.location.file, e.location.line) for e in errs] == [("cfg/a.yaml", 3), ("cfg/b.yaml", 1)]
    assert errs[0].summary.startswith("YAML syntax error")
    assert errs[1].summary.startswith("a config file must be a mapping")


def test_unknown_top_level_key(cfg):
    e = only(cfg(a_yaml="model: {m: {source: x}}\nfleets: {}\n"))
    assert e.summary == "unknown block type 'fleets'; did you mean 'fleet'?"
    assert str(e.location) == "cfg/a.yaml:2:1" and e.path == "fleets"


def test_unknown_keys_and_wrong_types(cfg):
    path = cfg(a_yaml="""\
        model:
          m: {source: hf://a/b, revison: x, dtype: bf16}
        fleet:
          f:
            model: model.m
            replicas: many
            engine: {sim: {ttft: 1}}
    """)
    got = {(e.path, str(e.location)): e.summary for e in errors(path)}
    assert got == {
        ("model.m.revison", "cfg/a.yaml:2:25"): "unknown key 'revison'; did you mean 'revision'?",
        ("model.m.dtype", "cfg/a.yaml:2:44"): got[("model.m.dtype", "cfg/a.yaml:2:44")],
        ("fleet.f.replicas", "cfg/a.yaml:6:15"): got[("fleet.f.replicas", "cfg/a.yaml:6:15")],
        ("fleet.f.engine.sim.ttft", "cfg/a.yaml:7:20"): "unknown key 'ttft'; did you mean 'ttft_ms'?",
    }
    assert "'bfloat16'" in got[("model.m.dtype", "cfg/a.yaml:2:44")] and "(got 'bf16')" in got[("model.m.dtype", "cfg/a.yaml:2:44")]
    assert "valid integer" in got[("fleet.f.replicas", "cfg/a.yaml:6:15")]


def test_missing_required_key_points_at_block(cfg):
    e = only(cfg(a_yaml="model:\n  m:\n    owner: me\n"))
    assert e.summary == "missing required key 'source'"
    assert (str(e.location), e.path) == ("cfg/a.yaml:2:3", "model.m.source")


@pytest.mark.parametrize(
    "snippet, message, where",
    [
        ("labels: {a: '${model.nope.revision}'}", "unknown model 'model.nope'", "fleet.f.labels.a"),
        ("labels: {a: '${model.m.revison}'}", "model.m has no attribute 'revison'; did you mean 'revision'?", "fleet.f.labels.a"),
        ("labels: {a: '${var.nope}'}", "unknown variable 'var.nope'", "fleet.f.labels.a"),
        ("labels: {a: '${var.regoin}'}", "unknown variable 'var.regoin'; did you mean 'region'?", "fleet.f.labels.a"),
        ("labels: {a: '${local.nope}'}", "unknown local 'local.nope'", "fleet.f.labels.a"),
        ("labels: {a: '${fleet.nope.endpoint}'}", "unknown fleet 'fleet.nope'", "fleet.f.labels.a"),
        ("depends_on: [fleet.nope]", "depends_on: unknown fleet 'fleet.nope'", "fleet.f.depends_on[0]"),
        ("labels: {a: '${each.key}'}", "each.key can only be used in a fleet with for_each", "fleet.f.labels.a"),
        ("labels: {a: '${var.region + 1}'}", "invalid expression", "fleet.f.labels.a"),
        ("replicas: ${fleet.g.port}", "replicas must be known at plan time", "fleet.f.replicas"),
        ("labels: {a: '${fleet.g[\"x\"].endpoint}'}", "fleet.g has no for_each", "fleet.f.labels.a"),
    ],
)
def test_reference_errors(cfg, snippet, message, where):
    path = cfg(a_yaml=f"""\
        variable:
          region: {{default: us}}
        model:
          m: {{source: hf://a/b}}
        fleet:
          g: {{model: model.m}}
          f:
            model: model.m
            {snippet}
    """)
    e = only(path)
    assert message in e.summary
    assert e.path == where
    assert e.location.file == "cfg/a.yaml" and e.location.line == 9


def test_fleet_model_field_must_name_a_model(cfg):
    e = only(cfg(a_yaml="model:\n  llama: {source: x}\nfleet:\n  f: {model: model.lama}\n"))
    assert e.summary == "unknown model 'model.lama'; did you mean 'model.llama'?"
    assert (str(e.location), e.path) == ("cfg/a.yaml:4:14", "fleet.f.model")


def test_duplicate_names_across_files(cfg):
    path = cfg(a_yaml="model:\n  m: {source: x}\n", b_yaml="\nmodel:\n  m: {source: y}\n")
    e = only(path)
    assert e.summary == "model 'm' is defined twice: at cfg/a.yaml:2:3 and at cfg/b.yaml:3:3"
    assert str(e.location) == "cfg/b.yaml:3:3"


def test_duplicate_key_in_one_mapping(cfg):
    e = only(cfg(a_yaml="model:\n  m: {source: x}\n  m: {source: y}\n"))
    assert "duplicate key 'm'" in e.summary and str(e.location) == "cfg/a.yaml:3:3"


def test_resource_cycle(cfg):
    path = cfg(a_yaml="""\
        model:
          m: {source: x}
        fleet:
          a: {model: model.m, labels: {x: "${fleet.b.endpoint}"}}
          b: {model: model.m, depends_on: [fleet.c]}
          c: {model: model.m, labels: {y: "${fleet.a.port}"}}
          ok: {model: model.m, depends_on: [fleet.a]}
    """)
    e = only(path)
    assert e.summary == "dependency cycle: fleet.a -> fleet.b -> fleet.c -> fleet.a"
    assert (str(e.location), e.path) == ("cfg/a.yaml:4:3", "fleet.a")


def test_locals_cycle_and_self_reference(cfg):
    path = cfg(a_yaml="""\
        locals:
          x: "${local.y}"
          y: "${local.x}-1"
          z: "${local.z}"
          w: "${local.x}"
    """)
    got = [(e.summary, str(e.location)) for e in errors(path)]
    assert got == [
        ("dependency cycle: local.x -> local.y -> local.x", "cfg/a.yaml:2:3"),
        ("dependency cycle: local.z -> local.z", "cfg/a.yaml:4:3"),
    ]


def test_for_each_errors(cfg):
    path = cfg(a_yaml="""\
        variable:
          n: {default: 3}
        model:
          m: {source: x}
        fleet:
          dup: {model: model.m, for_each: [us, eu, us]}
          num: {model: model.m, for_each: "${var.n}"}
          late: {model: model.m, for_each: "${fleet.dup.regions}"}
          own: {model: model.m, for_each: ["${each.key}"]}
    """)
    got = {e.path: (e.summary, e.location.line, e.location.col) for e in errors(path)}
    assert got["fleet.dup.for_each[2]"] == ("for_each has duplicate key 'us'", 6, 44)
    assert got["fleet.num.for_each"][0] == "for_each must be a list or a map, got 3"
    assert got["fleet.late.for_each"][0].startswith("for_each must be known at plan time")
    assert got["fleet.own.for_each[0]"][0] == "for_each cannot use each.key"
    assert "fleet.dup.for_each" not in got and len(got) == 5 - 1


def test_instance_key_checks(cfg):
    path = cfg(a_yaml="""\
        model:
          m: {source: x}
        fleet:
          r: {model: model.m, for_each: [us, eu]}
          a: {model: model.m, labels: {x: '${fleet.r["uss"].endpoint}', y: "${fleet.r.endpoint}"}}
    """)
    got = {e.path: e.summary for e in errors(path)}
    assert got["fleet.a.labels.x"] == "fleet.r has no instance \"uss\"; did you mean 'us'?"
    assert got["fleet.a.labels.y"].startswith("fleet.r uses for_each; refer to one instance by key")


def test_bad_variable_values(cfg):
    path = cfg(a_yaml=VARS, b_yaml=RESOURCES)
    errs = errors(path, var_args=["revision=nope", "regoins=[x]"], env={"INFRAPLAN_VAR_regions": "not a list"})
    got = {e.summary: e for e in errs}
    rule = got["revision must be a commit sha"]
    assert (str(rule.location), rule.path) == ("cfg/a.yaml:2:61", "variable.revision.validation[0]")
    assert any("did you mean 'regions'" in s for s in got)
    assert any(s.startswith("variable 'regions': expected a list") and "INFRAPLAN_VAR_regions" in s for s in got)
    assert len(errs) == 3  # nothing cascades from the bad values


def test_sensitive_output_must_be_marked(cfg):
    path = cfg(a_yaml=VARS + "output:\n  tok: {value: 'Bearer ${var.hf_token}'}\n  ok: {value: '${var.hf_token}', sensitive: true}\n")
    e = only(path)
    assert "uses sensitive values" in e.summary and e.path == "output.tok.value"


def test_many_errors_reported_at_once(cfg):
    path = cfg(
        a_yaml="""\
            variable:
              n: {type: number, defualt: 1}
            locals:
              l: "${var.missing}"
            model:
              m: {source: x, dtype: huge}
            fleet:
              f:
                model: model.m
                replicas: -1
                port: "${local.l}"
                depends_on: [model.zz]
        """,
        b_yaml="fleet:\n  f: {model: model.m}\n",
        c_yaml="output: [1]\n",
    )
    config, diags = validate_config(path)
    assert config is None
    where = sorted((d.path, d.location.file, d.location.line) for d in diags if d.location)
    assert [w[0] for w in where] == sorted([
        "variable.n.defualt", "locals.l", "model.m.dtype", "fleet.f.replicas",
        "fleet.f.depends_on[0]", "fleet.f", "output",
    ]), where
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert len(exc.value.diagnostics) == len(diags)
    assert "more errors" in str(exc.value)


def test_missing_path_and_empty_dir(tmp_path):
    assert "does not exist" in only(str(tmp_path / "nope")).summary
    assert "no *.yaml or *.yml files" in only(str(tmp_path)).summary


def test_locals_and_models_evaluate_in_dependency_order(cfg):
    path = cfg(a_yaml="""\
        variable:
          key: {default: s3cr3t-key, sensitive: true}
        locals:
          base_rev: "${model.base.revision}"
          tag: "${local.base_rev}-${model.base.name}"
          auth: "Bearer ${var.key}"
        model:
          tuned: {source: hf://me/tuned, revision: "${local.tag}", owner: "${model.base.owner}"}
          base: {source: hf://org/base, revision: v1, owner: team-a}
        provider:
          local: {settings: {token: "${local.auth}"}}
        fleet:
          f: {model: model.tuned, labels: {t: "${local.tag}"}, engine: {env: {AUTH: "${local.auth}"}}}
    """)
    c = load_config(path)
    assert c.models["model.tuned"].block.revision == "v1-base"
    assert c.models["model.tuned"].block.owner == "team-a"
    assert c.models["model.tuned"].depends_on == {"model.base"}
    # the fleet depends on model.base through local.tag
    assert c.fleets["fleet.f"].depends_on == {"model.tuned", "model.base"}
    assert c.providers["local"].settings == {"token": "Bearer s3cr3t-key"}
    assert c.sensitive_values == {"s3cr3t-key"}
    assert c.sensitive_paths == {"fleet.f.engine.env.AUTH"}


def test_provider_settings_must_be_known_at_plan_time(cfg):
    path = cfg(a_yaml="""\
        model:
          m: {source: x}
        fleet:
          f: {model: model.m}
        provider:
          local: {settings: {upstream: "${fleet.f.endpoint}"}}
    """)
    e = only(path)
    assert "only known after apply" in e.summary and e.path == "provider.local.settings.upstream"
    assert str(e.location) == "cfg/a.yaml:6:32"


def test_literal_dollar_escape_survives_loading(cfg):
    path = cfg(a_yaml="""\
        model:
          m: {source: x}
        fleet:
          f: {model: model.m, labels: {tpl: "$${not_a_ref}", v: "${var.v}"}}
        variable:
          v: {default: "${x}"}
    """)
    c = load_config(path)
    labels = c.fleets["fleet.f"].block.labels
    assert not any(has_deferred(v) for v in labels.values())
    assert resolve_deferred(labels, lambda ref: pytest.fail("no references expected")) == {"tpl": "${not_a_ref}", "v": "${x}"}


def test_a_service_fleets_rollout_strategy_becomes_skyserves_update_mode():
    fb = FleetBlock.model_validate({"model": "model.m", "placement": "service", "rollout": {"strategy": "blue_green"}})
    assert fb.provider_attributes()["service"]["update_mode"] == "blue_green"
    plain = FleetBlock.model_validate({"model": "model.m", "placement": "cluster", "rollout": {"strategy": "blue_green"}})
    assert "service" not in plain.provider_attributes()
