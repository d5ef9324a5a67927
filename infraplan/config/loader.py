"""Load a directory of YAML files (or one file) into a validated, evaluated `Config`.

Every problem found is collected as a located `Diagnostic`; `validate_config`
returns them all, `load_config` raises `ConfigError` carrying them.

Order of work: parse files -> merge blocks -> declare and resolve variables ->
check references statically and build the dependency graph (networkx) ->
report cycles -> evaluate locals, models, fleets, routers, providers, alerts and outputs in
dependency order -> validate each block with its pydantic model.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ValidationError

from infraplan.config.expressions import (
    INVALID,
    EvalContext,
    ExpressionError,
    Reference,
    evaluate,
    has_deferred,
    parse_template,
    to_text,
    unescape,
    walk_strings,
)
from infraplan.config.backend import validate_backend
from infraplan.config.files import config_file_paths
from infraplan.config.variables import resolve_variables, sensitive_strings
from infraplan.util.secrets import named_secrets
from infraplan.config.yaml_positions import PathT, Positions, format_path, load_yaml, parse_path
from infraplan.diagnostics import Diagnostic, Diagnostics, Location, did_you_mean, has_errors, short_repr
from infraplan.errors import ConfigError
from infraplan.util.gc_pause import no_cyclic_gc
from infraplan.models.config import (
    MAX_FOR_EACH,
    AlertBlock,
    BackendBlock,
    ConfigFile,
    FleetBlock,
    ModelBlock,
    OutputBlock,
    ProviderBlock,
    RouterBlock,
    VariableBlock,
)

TOP_LEVEL = tuple(ConfigFile.model_fields)
MODEL_ATTRS = frozenset(ModelBlock.model_fields) | {"name"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_DEP = re.compile(r"(model|fleet)\.([A-Za-z_][A-Za-z0-9_-]*)(\[[^\]]*\])?\Z")
_NODE_KIND = {"locals": "local", "model": "model", "fleet": "fleet", "provider": "provider", "output": "output",
              "alert": "alert", "router": "router"}
_DEFERRED = ("fleet", "router")  # reference kinds only known after apply
_BLOCK_KIND = {v: k for k, v in _NODE_KIND.items()}


@dataclass
class ResourceConfig:
    """One model, fleet or router instance, evaluated except for deferred references."""

    address: str
    kind: Literal["model", "fleet", "router"]
    name: str
    key: str | None
    block: ModelBlock | FleetBlock | RouterBlock
    depends_on: set[str]
    location: Location | None


@dataclass
class OutputConfig:
    """An output; `value` is in template form (may hold deferred references)."""

    name: str
    value: Any
    sensitive: bool
    description: str | None
    depends_on: set[str]
    location: Location | None


class _Index:
    """Finds the file and position of any config path in O(depth)."""

    def __init__(self) -> None:
        self.owner: dict[tuple, Positions] = {}  # (block type, name) -> file positions
        self.top: dict[str, Positions] = {}  # block type -> first file using it

    def locate(self, path: PathT, *, key: bool = False) -> Location | None:
        if not path:
            return None
        pos = self.owner.get(tuple(path[:2])) or self.top.get(path[0])  # type: ignore[arg-type]
        return pos.nearest(tuple(path), key=key) if pos is not None else None


@dataclass
class Config:
    """A loaded configuration.

    `root` is the config directory (a single file's parent).  `models` and
    `fleets` are keyed by address (``model.llama``, ``fleet.chat``,
    ``fleet.regional["us"]``).  `locals` and resource values are in template
    form (see `infraplan.config.expressions`).
    """

    root: Path
    files: list[Path]
    variables: dict[str, Any]
    sensitive_values: set[str]
    sensitive_paths: set[str]
    locals: dict[str, Any]
    providers: dict[str, ProviderBlock]
    models: dict[str, ResourceConfig]
    fleets: dict[str, ResourceConfig]
    outputs: dict[str, OutputConfig]
    digest: str
    variable_blocks: dict[str, VariableBlock] = field(default_factory=dict)
    alerts: dict[str, AlertBlock] = field(default_factory=dict)  # name -> block; `url` is sensitive
    routers: dict[str, ResourceConfig] = field(default_factory=dict)  # ``router.NAME`` -> router
    backend: BackendBlock | None = None  # where the state lives, if the config says
    warnings: list[Diagnostic] = field(default_factory=list)
    _index: _Index = field(default_factory=_Index, repr=False, compare=False)

    def location_of(self, path: str | PathT, *, key: bool = False) -> Location | None:
        """Where a config path such as ``fleet.chat.engine.args`` is written (its key's place with `key`)."""
        steps = parse_path(path) if isinstance(path, str) else tuple(path)
        if steps and steps[0] == "local":
            steps = ("locals",) + steps[1:]
        return self._index.locate(steps, key=key)

    @property
    def resources(self) -> dict[str, ResourceConfig]:
        """Models then fleets, by address."""
        return {**self.models, **self.fleets}


def validate_config(
    path: str | Path,
    *,
    var_args: Sequence[str] = (),
    var_files: Sequence[str | Path] = (),
    env: Mapping[str, str] | None = None,
    origin: str | None = None,
) -> tuple[Config | None, list[Diagnostic]]:
    """Load and check a config; never raises for config problems.

    Returns ``(config, diagnostics)``; `config` is None when any diagnostic is
    an error.  Warnings come back either way. `origin` says where the files really come
    from when `path` holds copies (``"as of history #4"``): diagnostics then name each
    file by its own name, with that note, never by the copy's path.
    """
    loader = _Loader(path, var_args, var_files, env, origin)
    with no_cyclic_gc():
        config = loader.run()
    diags = sorted(loader.diags, key=_diag_order)
    if has_errors(diags):
        return None, diags
    assert config is not None
    config.warnings = diags
    return config, diags


def _digraph():
    # networkx is imported on first use: an empty config (and `infraplan --help`) never pays for it
    import networkx as nx

    return nx.DiGraph()


def load_config(
    path: str | Path,
    *,
    var_args: Sequence[str] = (),
    var_files: Sequence[str | Path] = (),
    env: Mapping[str, str] | None = None,
    origin: str | None = None,
) -> Config:
    """Load a config or raise `ConfigError` with every diagnostic (`origin`: see `validate_config`)."""
    config, diags = validate_config(path, var_args=var_args, var_files=var_files, env=env, origin=origin)
    if config is None:
        raise ConfigError(diags)
    return config


def _diag_order(d: Diagnostic) -> tuple:
    loc = d.location
    return (loc is None, loc.file if loc else "", loc.line if loc else 0, loc.col if loc else 0)


def _submodel(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in get_args(ann):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _fields_at(cls: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The field names valid at `loc` inside `cls` (for did-you-mean)."""
    for step in loc:
        if cls is None:
            return []
        if isinstance(step, str) and step in cls.model_fields:
            cls = _submodel(cls.model_fields[step].annotation)
        elif not isinstance(step, int):
            return []
    return list(cls.model_fields) if cls is not None else []


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Loader:
    def __init__(self, path: str | Path, var_args: Sequence[str], var_files: Sequence[str | Path],
                 env: Mapping[str, str] | None, origin: str | None = None):
        self.given = str(path)
        self.origin = origin
        self.path = Path(path)
        self.var_args = list(var_args)
        self.var_files = list(var_files)
        self.env = env
        self.diags = Diagnostics()
        self.index = _Index()
        self.files: list[Path] = []
        self.hash = hashlib.sha256()
        self.raw: dict[str, dict[str, Any]] = {k: {} for k in TOP_LEVEL}
        # (node, path inside the node) whose expression errors were already reported
        self.reported: set[tuple[str, PathT]] = set()
        self.refs: dict[str, list[tuple[PathT, Reference]]] = {}
        self.explicit_deps: dict[str, set[str]] = {}
        self.local_deps: dict[str, set[str]] = {}
        self.sensitive_locals: set[str] = set()
        self.sensitive_model_attrs: dict[str, set[str]] = {}
        self.sensitive_paths: set[str] = set()
        self.fleet_keys: dict[str, Any] = {}  # name -> list of for_each keys | None | INVALID
        self.fleet_replicas: dict[str, int] = {}
        self.backend: BackendBlock | None = None
        self.backend_at: Location | None = None

    # -- diagnostics -----------------------------------------------------
    def error(self, summary: str, path: PathT = (), *, key: bool = False, location: Location | None = None,
              severity: Literal["error", "warning"] = "error", detail: str | None = None) -> None:
        loc = location or self.index.locate(path, key=key)
        pstr = format_path(path) if path else None
        self.diags.append(Diagnostic(summary, severity=severity, location=loc, path=pstr, detail=detail))

    def add(self, diags: list[Diagnostic]) -> None:
        self.diags.extend(diags)

    def pydantic_errors(self, exc: ValidationError, base: PathT, cls: type[BaseModel],
                        secret: frozenset[str] = frozenset()) -> None:
        """Report pydantic's errors at their config paths; values of `secret` fields are never shown."""
        for e in exc.errors(include_url=False):
            loc = tuple(e["loc"])
            path = base + loc
            inp = e.get("input")
            if inp is INVALID:
                continue
            hide = bool(loc) and loc[0] in secret
            kind = e["type"]
            if kind == "extra_forbidden":
                hint = did_you_mean(str(loc[-1]), _fields_at(cls, loc[:-1]))
                self.error(f"unknown key {short_repr(loc[-1])}{hint}", path, key=True)
            elif kind == "missing":
                self.error(f"missing required key {short_repr(loc[-1])}", path)
            elif isinstance(inp, str) and has_deferred(inp):
                self.error(
                    f"{format_path(loc)} must be known at plan time, but "
                    f"{'its value' if hide else repr(inp)} is only known after apply",
                    path,
                )
            else:
                msg = e["msg"].removeprefix("Value error, ")
                got = f" (got {_short(unescape(inp))})" if isinstance(inp, (str, int, float, bool)) and not msg.startswith("must") \
                    and not hide else ""
                self.error(f"{msg}{got}", path)

    # -- steps -------------------------------------------------------------
    def run(self) -> Config | None:
        for file, name in self._config_files():
            self._read(file, name)
        if not self.files:
            return None
        variables = self._variables()
        nodes = self._analyse()
        order = self._order(nodes)
        results = self._evaluate(order, variables)
        self._check_fleet_keys()
        self.hash.update(b"\0vars\0")
        self.hash.update(json.dumps(variables, sort_keys=True, default=repr).encode())
        if has_errors(self.diags):
            return None
        return self._config(variables, results)

    def _config_files(self) -> list[tuple[Path, str]]:
        p = self.path
        if p.is_dir():
            files = config_file_paths(p)
            if not files:
                self.error(f"no *.yaml or *.yml files in {self.given}")
            return [(f, f.name if self.origin else str(Path(self.given) / f.name)) for f in files]
        if p.is_file():
            return [(p, p.name if self.origin else self.given)]
        self.error(f"config path {self.given} does not exist")
        return []

    def _read(self, file: Path, name: str) -> None:
        try:
            data = file.read_bytes()
        except OSError as e:
            self.error(f"cannot read {name}: {e.strerror or e}", location=Location(name, 1, 1, self.origin))
            return
        self.files.append(file)
        self.hash.update(f"\0file\0{file.name}\0{len(data)}\0".encode() + data)
        value, pos, diags = load_yaml(data, name)
        if self.origin:
            pos.note = self.origin
            for d in diags:
                if d.location is not None:
                    d.location = replace(d.location, note=self.origin)
        self.add(diags)
        if value is None:
            return
        if not isinstance(value, dict):
            self.error(
                f"a config file must be a mapping of block types ({', '.join(TOP_LEVEL)})",
                location=pos.nearest(()),
            )
            return
        for kind, blocks in value.items():
            if kind not in TOP_LEVEL:
                self.error(f"unknown block type {short_repr(kind)}{did_you_mean(kind, TOP_LEVEL)}", location=pos.key_at((kind,)),
                           path=(kind,))
                continue
            self.index.top.setdefault(kind, pos)
            if kind == "backend":
                self._backend(blocks, pos)
                continue
            if blocks is None:
                continue
            if not isinstance(blocks, dict):
                self.error(f"{kind} must be a mapping of names to {'values' if kind == 'locals' else 'blocks'}",
                           location=pos.nearest((kind,)), path=(kind,))
                continue
            for bname, raw in blocks.items():
                path = (kind, bname)
                prev = self.index.owner.get(path)
                here = pos.key_at(path)
                label = "local" if kind == "locals" else kind
                if prev is not None:
                    self.error(
                        f"{label} {short_repr(bname)} is defined twice: at {prev.key_at(path)} and at {here}",
                        location=here, path=path,
                    )
                    continue
                if not _NAME.match(bname):
                    self.error(f"invalid {label} name {short_repr(bname)}: use letters, digits, '_' and '-', starting with a letter",
                               location=here, path=path)
                self.index.owner[path] = pos
                self.raw[kind][bname] = {} if raw is None and kind != "locals" else raw

    def _backend(self, raw: Any, pos: Positions) -> None:
        block, diags = validate_backend(raw, pos)
        self.add(diags)
        here = pos.key_at(("backend",))
        if block is None:
            return
        if self.backend is not None:
            self.error(f"backend is defined twice: at {self.backend_at} and at {here}", location=here,
                       path=("backend",))
            return
        self.backend, self.backend_at = block, here

    def _variables(self) -> dict[str, Any]:
        self.decls: dict[str, VariableBlock] = {}
        for name, raw in self.raw["variable"].items():
            try:
                self.decls[name] = VariableBlock.model_validate(raw)
            except ValidationError as e:
                self.pydantic_errors(e, ("variable", name), VariableBlock)
        values, diags = resolve_variables(
            self.decls, var_args=self.var_args, var_files=self.var_files, env=self.env,
            locate=lambda p: self.index.locate(p, key=len(p) == 2),  # a whole variable: point at its name
        )
        self.add(diags)
        for name in self.raw["variable"]:
            values.setdefault(name, INVALID)
        self.sensitive_values: set[str] = set()
        for name, decl in self.decls.items():
            if decl.sensitive and values[name] is not INVALID:
                self.sensitive_values |= sensitive_strings(values[name])
        return {name: values[name] for name in self.raw["variable"]}

    def _base(self, node: str) -> PathT:
        kind, name = node.split(".", 1)
        return (_BLOCK_KIND[kind], name)

    def _analyse(self) -> list[str]:
        """Check references statically and build the dependency graph."""
        if not any(self.raw[k] for k in ("locals", "model", "fleet", "router", "provider", "alert", "output")):
            self.graph = None
            return []
        self.graph = g = _digraph()
        nodes: list[str] = []
        for block_kind in ("locals", "model", "fleet", "router", "provider", "alert", "output"):
            for name, raw in self.raw[block_kind].items():
                node = f"{_NODE_KIND[block_kind]}.{name}"
                nodes.append(node)
                g.add_node(node)
                refs: list[tuple[PathT, Reference]] = []
                for rel, text in walk_strings(raw):
                    try:
                        tpl = parse_template(text)
                    except ExpressionError as e:
                        self._report(node, rel, str(e))
                        continue
                    for ref in tpl.refs:
                        problem = self._check_ref(block_kind, raw, rel, ref)
                        if problem:
                            self._report(node, rel, problem)
                        else:
                            refs.append((rel, ref))
                            if ref.kind in ("local", "model", "fleet", "router"):
                                g.add_edge(node, ref.address)
                self.refs[node] = refs
                if block_kind == "fleet" and isinstance(raw, dict):
                    self._fleet_edges(node, raw)
                if block_kind == "router" and isinstance(raw, dict):
                    self._router_edges(node, raw)
        return nodes

    def _report(self, node: str, rel: PathT, message: str) -> None:
        self.reported.add((node, rel))
        self.error(message, self._base(node) + rel)

    def _check_ref(self, block_kind: str, raw: Any, rel: PathT, ref: Reference) -> str | None:
        if ref.kind == "each":
            if block_kind != "fleet" or not isinstance(raw, dict) or raw.get("for_each") is None:
                return f"each.{ref.name} can only be used in a fleet with for_each"
            if rel[:1] == ("for_each",):
                return f"for_each cannot use each.{ref.name}"
            return None
        table = self.raw[{"var": "variable", "local": "locals"}.get(ref.kind, ref.kind)]
        if ref.name not in table:
            noun = {"var": "variable", "local": "local"}.get(ref.kind, ref.kind)
            return f"unknown {noun} {short_repr(ref.address)}{did_you_mean(ref.name, table)}"
        if ref.kind == "model" and ref.path[0] not in MODEL_ATTRS:
            return f"model.{ref.name} has no attribute {short_repr(ref.path[0])}{did_you_mean(str(ref.path[0]), sorted(MODEL_ATTRS))}"
        return None

    def _fleet_edges(self, node: str, raw: dict) -> None:
        base = self._base(node)
        model = raw.get("model")
        if isinstance(model, str) and "${" not in model and model.startswith("model."):
            if model[6:] in self.raw["model"]:
                self.graph.add_edge(node, model)
            else:
                self.error(f"unknown model {short_repr(model)}{did_you_mean(model, ['model.' + m for m in self.raw['model']])}", base + ("model",))
        deps: set[str] = set()
        depends_on = raw.get("depends_on")
        for i, item in enumerate(depends_on if isinstance(depends_on, list) else ()):
            if not isinstance(item, str) or "${" in item:
                continue  # pydantic / evaluation report these
            m = _DEP.match(item)
            if not m:
                self.error(f"depends_on entries must be addresses like fleet.NAME or model.NAME, got {short_repr(item)}",
                           base + ("depends_on", i))
                continue
            kind, name = m.group(1), m.group(2)
            if name not in self.raw[kind]:
                self.error(f"depends_on: unknown {kind} '{kind}.{name}'{did_you_mean(name, self.raw[kind])}",
                           base + ("depends_on", i))
                continue
            deps.add(f"{kind}.{name}")
            self.graph.add_edge(node, f"{kind}.{name}")
        self.explicit_deps[node] = deps

    def _router_edges(self, node: str, raw: dict) -> None:
        """A router depends on the fleets it fronts; unknown fleets are located errors."""
        fleets = raw.get("fleets")
        for i, item in enumerate(fleets if isinstance(fleets, list) else ()):
            if not isinstance(item, str) or "${" in item or not item.startswith("fleet."):
                continue  # pydantic / evaluation report these
            name = item[len("fleet."):]
            if name in self.raw["fleet"]:
                self.graph.add_edge(node, item)
            elif _NAME.match(name):
                hint = did_you_mean(item, ["fleet." + f for f in self.raw["fleet"]])
                self.error(f"unknown fleet {short_repr(item)}{hint}", self._base(node) + ("fleets", i))

    def _order(self, nodes: list[str]) -> list[str]:
        """Nodes in evaluation order (dependencies first); cycles are reported and left out."""
        if not nodes:
            return []
        import networkx as nx

        g = self.graph
        rank = {n: i for i, n in enumerate(nodes)}
        self.cyclic: set[str] = set()
        for comp in nx.strongly_connected_components(g):
            if len(comp) == 1:
                (only,) = comp
                if not g.has_edge(only, only):
                    continue
            start = min(comp, key=rank.__getitem__)
            cycle = nx.find_cycle(g.subgraph(comp), source=start)
            text = " -> ".join([u for u, _ in cycle] + [cycle[-1][1]])
            self.error(f"dependency cycle: {text}", self._base(start), key=True)
            self.cyclic |= comp
        acyclic = g.subgraph(n for n in nodes if n not in self.cyclic)
        return list(reversed(list(nx.topological_sort(acyclic))))

    # -- evaluation --------------------------------------------------------
    def _eval(self, node: str, value: Any, ctx: EvalContext, *, prefix: PathT = (), defer: tuple[str, ...] = _DEFERRED) -> Any:
        base = self._base(node) + prefix

        def on_error(rel: PathT, e: ExpressionError) -> None:
            if (node, prefix + rel) not in self.reported:
                self.error(str(e), base + rel)

        return evaluate(value, ctx, defer=defer, on_error=on_error)

    def _is_sensitive(self, ref: Reference) -> bool:
        if ref.kind == "var":
            decl = self.decls.get(ref.name)
            return bool(decl and decl.sensitive)
        if ref.kind == "local":
            return ref.name in self.sensitive_locals
        if ref.kind == "model":
            return ref.path[0] in self.sensitive_model_attrs.get(ref.name, ())
        return False

    def _deps_and_taint(self, node: str) -> tuple[set[str], set[PathT]]:
        deps: set[str] = set(self.explicit_deps.get(node, ()))
        tainted: set[PathT] = set()
        for rel, ref in self.refs[node]:
            if ref.kind in ("model", "fleet", "router"):
                deps.add(ref.address)
            elif ref.kind == "local":
                deps |= self.local_deps.get(ref.name, set())
            if self._is_sensitive(ref):
                tainted.add(rel)
        return deps, tainted

    def _evaluate(self, order: list[str], variables: dict[str, Any]) -> dict[str, Any]:
        self.local_values: dict[str, Any] = {n: INVALID for n in self.raw["locals"]}
        self.model_attrs: dict[str, Any] = {n: INVALID for n in self.raw["model"]}
        ctx = EvalContext(variables, self.local_values, self.model_attrs)
        out: dict[str, dict[str, Any]] = {"model": {}, "fleet": {}, "router": {}, "provider": {}, "alert": {}, "output": {}}
        for node in order:
            kind, name = node.split(".", 1)
            raw = self.raw[_BLOCK_KIND[kind]][name]
            deps, tainted = self._deps_and_taint(node)
            if kind == "local":
                self.local_deps[name] = deps
                if tainted:
                    self.sensitive_locals.add(name)
                self.local_values[name] = self._eval(node, raw, ctx)
                continue
            base = self._base(node)
            if not isinstance(raw, dict):
                self.error(f"{kind}.{name} must be a mapping, got {_short(raw)}", base)
                continue
            if kind == "model":
                self.sensitive_model_attrs[name] = {str(rel[0]) for rel in tainted}
                self.sensitive_paths |= {f"model.{name}.{format_path(rel)}" for rel in tainted}
                block = self._validate(node, self._eval(node, raw, ctx), ModelBlock)
                if block is not None:
                    self.model_attrs[name] = {**block.model_dump(), "name": name}
                    out["model"][name] = [ResourceConfig(f"model.{name}", "model", name, None, block, deps,
                                                         self.index.locate(base, key=True))]
            elif kind == "fleet":
                out["fleet"][name] = self._fleet(node, name, raw, ctx, deps, tainted)
            elif kind == "router":
                block = self._validate(node, self._eval(node, raw, ctx), RouterBlock)
                if block is not None and all(f[len("fleet."):] in self.raw["fleet"] for f in block.fleets):
                    out["router"][name] = ResourceConfig(f"router.{name}", "router", name, None, block,
                                                         deps | set(block.fleets), self.index.locate(base, key=True))
            elif kind == "provider":
                block = self._validate(node, self._eval(node, raw, ctx, defer=()), ProviderBlock)
                if block is not None:
                    out["provider"][name] = block
            elif kind == "alert":
                block = self._validate(node, self._eval(node, raw, ctx, defer=()), AlertBlock, secret=frozenset({"url"}))
                if block is not None:
                    block = block.model_copy(update={"url": unescape(block.url)})
                    out["alert"][name] = block
                    self.sensitive_values.add(block.url)  # alert URLs carry tokens: redact them everywhere
            else:
                out["output"][name] = self._output(node, name, raw, ctx, deps, tainted)
        return out

    def _validate(self, node: str, value: Any, cls: type[BaseModel], secret: frozenset[str] = frozenset()) -> Any:
        try:
            return cls.model_validate(value)
        except ValidationError as e:
            self.pydantic_errors(e, self._base(node), cls, secret)
            return None

    def _fleet(self, node: str, name: str, raw: dict, ctx: EvalContext, deps: set[str], tainted: set[PathT]) -> list[ResourceConfig]:
        base = self._base(node)
        body = {k: v for k, v in raw.items() if k != "for_each"}
        if raw.get("for_each") is None:
            instances: list[tuple[Any, Any]] | None = [(None, None)]
            self.fleet_keys[name] = None
        else:
            fe = self._eval(node, raw["for_each"], ctx, prefix=("for_each",))
            instances = self._instances(fe, base + ("for_each",))
            self.fleet_keys[name] = [k for k, _ in instances] if instances is not None else INVALID
        results = []
        for key, value in instances or [(INVALID, INVALID)]:
            each = None if key is None else (key, value)
            ictx = EvalContext(ctx.variables, ctx.locals, ctx.models, each)
            block = self._validate(node, self._eval(node, body, ictx), FleetBlock)
            if block is None or key is INVALID:
                continue
            if block.model[6:] not in self.raw["model"]:
                self.error(f"unknown model {short_repr(block.model)}{did_you_mean(block.model, ['model.' + m for m in self.raw['model']])}",
                           base + ("model",))
                continue
            self._check_server_args(block, base)
            self._check_engine_chosen(block, base)
            if isinstance(block.replicas, int):
                self.fleet_replicas[name] = block.replicas
            address = f"fleet.{name}" if key is None else f"fleet.{name}[{json.dumps(key)}]"
            self.sensitive_paths |= {f"{address}.{format_path(rel)}" for rel in tainted}
            results.append(ResourceConfig(address, "fleet", name, key, block, deps | {block.model},
                                          self.index.locate(base, key=True)))
        return results

    def _check_engine_chosen(self, block: FleetBlock, base: PathT) -> None:
        """A fleet that does not say which engine it runs gets the simulator: say so (one that
        writes `engine.type: sim` chose it, and hears nothing)."""
        if "type" in block.engine.model_fields_set:
            return
        where = base + ("engine",) if "engine" in block.model_fields_set else base
        self.error(f"fleet.{base[1]} runs the sim engine, not inference: engine.type is not set", where, key=True,
                   severity="warning",
                   detail="the sim is infraplan's SGLang API simulator (deterministic text, real HTTP and metrics); "
                          "set engine.type to sglang to serve the model, or to sim to say the simulator is meant")

    def _check_server_args(self, block: FleetBlock, base: PathT) -> None:
        """`engine.args` against the snapshot of the pinned (else the newest) SGLang release's parser:
        every bad arg, located, with a did-you-mean."""
        from infraplan.serving.sglang_args import DEFAULT_VERSION, deprecated_args, unsupported_version, validate_args

        version = block.engine.sglang_version or DEFAULT_VERSION
        problem = unsupported_version(version)
        if problem:
            self.error(problem, base + ("engine", "sglang_version"))
            return
        args = {k: v for k, v in block.engine.args.items() if not (isinstance(v, str) and has_deferred(v))}
        for arg, message in validate_args(args, version):
            self.error(message, base + ("engine", "args", arg), key=True)
        for arg, message in deprecated_args(args, version):
            self.error(f"{arg} is {message}", base + ("engine", "args", arg), key=True, severity="warning")

    def _instances(self, fe: Any, path: PathT) -> list[tuple[Any, Any]] | None:
        """``(key, each.value)`` pairs of a for_each value, or None after reporting an error."""
        if fe is INVALID:
            return None
        if isinstance(fe, dict):
            pairs = [(str(k), v) for k, v in fe.items()]
            if has_deferred(list(fe)):
                self.error("for_each keys must be known at plan time", path)
                return None
        elif isinstance(fe, list):
            pairs = []
            for i, item in enumerate(fe):
                if item is INVALID:
                    return None  # already reported
                if isinstance(item, str) and has_deferred(item):
                    self.error(f"for_each must be known at plan time, but item {short_repr(item)} is only known after apply",
                               path + (i,))
                    return None
                if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                    self.error(f"for_each list items must be strings or numbers, got {_short(item)}", path + (i,))
                    return None
                pairs.append((unescape(item) if isinstance(item, str) else to_text(item), item))
        elif isinstance(fe, str) and has_deferred(fe):
            self.error(f"for_each must be known at plan time, but {short_repr(fe)} is only known after apply", path)
            return None
        else:
            self.error(f"for_each must be a list or a map, got {_short(fe)}", path)
            return None
        seen: dict[str, int] = {}
        for i, (key, _) in enumerate(pairs):
            if key in seen:
                self.error(f"for_each has duplicate key {short_repr(key)}", path + (i,))
                return None
            seen[key] = i
        if len(pairs) > MAX_FOR_EACH:
            self.error(f"for_each has {len(pairs):,} items; at most {MAX_FOR_EACH} are allowed", path)
            return None
        return pairs

    def _output(self, node: str, name: str, raw: dict, ctx: EvalContext, deps: set[str], tainted: set[PathT]) -> OutputConfig | None:
        block = self._validate(node, self._eval(node, raw, ctx), OutputBlock)
        if block is None:
            return None
        if tainted and not block.sensitive:
            self.error(f"output {short_repr(name)} uses sensitive values; mark it `sensitive: true`",
                       self._base(node) + ("value",))
        return OutputConfig(name, block.value, block.sensitive, block.description, deps,
                            self.index.locate(self._base(node), key=True))

    def _check_fleet_keys(self) -> None:
        for node, refs in self.refs.items():
            for rel, ref in refs:
                if ref.kind != "fleet" or ref.name not in self.fleet_keys:
                    continue
                keys = self.fleet_keys[ref.name]
                where = self._base(node) + rel
                if keys is INVALID:
                    continue
                if keys is None:
                    if isinstance(ref.key, str):
                        self.error(f"fleet.{ref.name} has no for_each; {ref.instance_address} does not exist", where)
                    elif isinstance(ref.key, int) and ref.name in self.fleet_replicas and ref.key >= self.fleet_replicas[ref.name]:
                        self.error(f"fleet.{ref.name} has {self.fleet_replicas[ref.name]} replicas; "
                                   f"index {ref.key} is out of range", where)
                elif not isinstance(ref.key, str):
                    example = f'fleet.{ref.name}[{json.dumps(keys[0])}]' if keys else f'fleet.{ref.name}["KEY"]'
                    self.error(f"fleet.{ref.name} uses for_each; refer to one instance by key, e.g. {example}", where)
                elif ref.key not in keys:
                    self.error(f"fleet.{ref.name} has no instance {json.dumps(ref.key)}{did_you_mean(ref.key, keys)}", where)

    def _config(self, variables: dict[str, Any], results: dict[str, dict[str, Any]]) -> Config:
        models = {r.address: r for name in self.raw["model"] for r in results["model"].get(name, ())}
        fleets = {r.address: r for name in self.raw["fleet"] for r in results["fleet"].get(name, ())}
        outputs = {n: results["output"][n] for n in self.raw["output"] if results["output"].get(n)}
        providers = {n: results["provider"][n] for n in self.raw["provider"] if n in results["provider"]}
        alerts = {n: results["alert"][n] for n in self.raw["alert"] if n in results["alert"]}
        routers = {f"router.{n}": results["router"][n] for n in self.raw["router"] if n in results["router"]}
        root = self.path if self.path.is_dir() else self.path.parent
        for r in (*models.values(), *fleets.values(), *routers.values()):
            # a key written into the config is as secret as one passed in a sensitive variable
            self.sensitive_values |= named_secrets(r.block.model_dump(mode="json"))
        return Config(
            root=root,
            files=self.files,
            variables=variables,
            sensitive_values=self.sensitive_values,
            sensitive_paths=self.sensitive_paths,
            locals={n: self.local_values[n] for n in self.raw["locals"]},
            providers=providers,
            models=models,
            fleets=fleets,
            outputs=outputs,
            digest=self.hash.hexdigest(),
            variable_blocks=self.decls,
            alerts=alerts,
            routers=routers,
            backend=self.backend,
            _index=self.index,
        )
