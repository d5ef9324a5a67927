#!/usr/bin/env python3
"""Snapshot one SGLang release's server-arg parser as infraplan/serving/server_args/<VERSION>.json.

    python scripts/snapshot_sglang_args.py 0.5.23            # pip download the wheel, write the snapshot
    python scripts/snapshot_sglang_args.py 0.5.23 --wheel W  # use an already downloaded wheel
    python scripts/snapshot_sglang_args.py 0.5.23 --out -    # print instead of writing

The entries come from SGLang's own `ServerArgs.add_cli_args(argparse.ArgumentParser())`,
run from the unzipped wheel; each is one `parser._actions` entry. SGLang's modules import torch,
transformers and the like: every module that is neither in the standard library, nor part of
the wheel, nor in REAL_DEPENDENCIES (installed at a pinned version into a scratch folder) is
replaced by a stub whose attributes are stand-in classes, always, so the snapshot does not
depend on what happens to be installed here. An sglang module that fails under the stubs keeps
what it defined (and is named on stderr); a parser option whose type or choices came from a stub
is an error. SGLANG_* environment variables are cleared so defaults are the shipped ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "infraplan" / "serving" / "server_args"
SERVER_ARGS = "sglang/srt/server_args.py"


class _Stub(type):
    """The metaclass of stand-ins for anything a stubbed module holds.

    A stand-in is a class, so SGLang can subclass it (`class ModelCard(BaseModel)`), use it in type
    hints (`List[ModelCard]`), call it, index it and read attributes of it; each answer is a stand-in.
    """

    def __new__(mcs, name: str, bases: tuple, ns: dict, **_class_kwargs: Any):
        return super().__new__(mcs, name, bases, ns)  # `class X(TypedDictStub, total=False)`

    def __init__(cls, name: str, bases: tuple, ns: dict, **_class_kwargs: Any):
        super().__init__(name, bases, ns)

    def __getattr__(cls, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return _stand_in(f"{cls.__qualname__}.{attr}")

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]) and not isinstance(args[0], _Stub):
            return args[0]  # a decorator (`@torch.compile`, `@triton.jit`): keep the function
        return _stand_in(f"{cls.__qualname__}()")

    def __getitem__(cls, item: Any) -> Any:
        return cls

    def __or__(cls, other: Any) -> Any:
        return cls

    __ror__ = __or__

    def __iter__(cls):
        return iter(())

    def __len__(cls) -> int:
        return 0

    def __bool__(cls) -> bool:
        return True

    def __contains__(cls, item: Any) -> bool:
        return False

    def __int__(cls) -> int:
        return 0

    __index__ = __int__

    def __float__(cls) -> float:
        return 0.0

    def __enter__(cls) -> Any:
        return cls

    def __exit__(cls, *exc: Any) -> None:
        return None

    def _same(cls, *_: Any) -> Any:
        return cls

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _same
    __floordiv__ = __mod__ = __pow__ = __neg__ = __and__ = __rand__ = __lshift__ = __rshift__ = _same
    __lt__ = __le__ = __gt__ = __ge__ = _same


def _stand_in(name: str) -> type:
    return _Stub(name.rpartition(".")[2] or name, (), {"__qualname__": name, "__module__": "stub"})


class _StubModule(types.ModuleType):
    """A module whose every attribute is a stand-in (and which is a package, for submodules)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__path__ = []  # a package: `import torch.nn.functional` works
        self.__file__ = f"<stub {name}>"
        self.__version__ = "0.0.0"  # version checks at import time (`torch.__version__`)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        value = _stand_in(f"{self.__name__}.{attr}")
        setattr(self, attr, value)
        return value


#: Third-party packages the parser itself is built with (0.5.23's ServerArgs is a msgspec Struct):
#: these run for real, at this exact version, installed into the scratch folder; all others are stubs.
REAL_DEPENDENCIES = {"msgspec": "msgspec==0.22.0"}


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Stubs every import outside the standard library, `sglang` and REAL_DEPENDENCIES."""

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top == "sglang" or top in sys.stdlib_module_names or top in REAL_DEPENDENCIES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        pass


class _PartialModule(types.ModuleType):
    """An sglang module that stopped part way (a stub did not behave like torch): what it defined
    before that is real, the rest are stand-ins."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return _stand_in(f"{self.__name__}.{attr}")


class _TolerantLoader(importlib.machinery.SourceFileLoader):
    """Runs an sglang module from the wheel; if it fails, keeps it as a `_PartialModule`."""

    partial: list[str] = []

    def exec_module(self, module):
        try:
            super().exec_module(module)
        except Exception:
            if module.__name__ in _REAL:
                raise
            module.__class__ = _PartialModule
            self.partial.append(module.__name__)


#: Modules that must run to the end: the parser is built here.
_REAL = {"sglang.srt.server_args"}


class _SglangFinder(importlib.abc.MetaPathFinder):
    """Finds `sglang.*` in the unzipped wheel only, loaded by `_TolerantLoader`."""

    def __init__(self, root: Path):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith("sglang."):
            return None
        base = self.root.joinpath(*fullname.split("."))
        if (base / "__init__.py").is_file():
            init = base / "__init__.py"
            return importlib.util.spec_from_file_location(
                fullname, init, loader=_TolerantLoader(fullname, str(init)), submodule_search_locations=[str(base)])
        if base.with_suffix(".py").is_file():
            file = base.with_suffix(".py")
            return importlib.util.spec_from_file_location(fullname, file, loader=_TolerantLoader(fullname, str(file)))
        if base.is_dir():  # a namespace package (no __init__.py)
            spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
            spec.submodule_search_locations = [str(base)]
            return spec
        return None


def _import_server_args(root: Path, deps: Path) -> types.ModuleType:
    """`sglang.srt.server_args` from the unzipped wheel at `root`, heavy dependencies stubbed."""
    sys.path.insert(0, str(deps))
    for name in REAL_DEPENDENCIES:
        module = importlib.import_module(name)
        if not str(Path(module.__file__).resolve()).startswith(str(deps.resolve())):
            raise SystemExit(f"{name} was imported from {module.__file__}, not from {deps}")
    for name in [n for n in sys.modules if n == "sglang" or n.startswith("sglang.")]:
        del sys.modules[name]
    # the `sglang` package itself: a bare namespace, so its __init__ (the whole frontend, torch, ...) never runs
    pkg = _PartialModule("sglang")
    pkg.__path__ = [str(root / "sglang")]
    pkg.__file__ = str(root / "sglang" / "__init__.py")
    sys.modules["sglang"] = pkg
    sys.meta_path[:0] = [_SglangFinder(root), _StubFinder()]
    return importlib.import_module("sglang.srt.server_args")


def _json_safe(value: Any) -> Any:
    """A JSON value for a default or choice; values only known at run time (stubs, callables) are None."""
    if isinstance(value, _Stub) or callable(value) and not isinstance(value, (str, enum.Enum)):
        return None
    if isinstance(value, enum.Enum):
        return _json_safe(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (set, frozenset)):
        return sorted((_json_safe(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _json_safe(dataclasses.asdict(value))
    return None


def _has_stub(value: Any) -> bool:
    if isinstance(value, _Stub):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_has_stub(v) for v in value)
    if isinstance(value, dict):
        return any(_has_stub(k) or _has_stub(v) for k, v in value.items())
    return False


#: SGLang's value converters whose values infraplan can check: converter name -> type.
CONVERTER_TYPES = {"nullable_str": "str", "human_readable_int": "size", "parse_cuda_graph_config_arg": "json"}


def _scalar_type(action: argparse.Action) -> str:
    kind = action.type
    if kind is None:
        return "str"
    for real, name in ((int, "int"), (float, "float"), (str, "str"), (json.loads, "json")):
        if kind is real:
            return name
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "str"
    fn = kind.__name__ if isinstance(kind, types.FunctionType) else ""  # a converter such as json_list_type
    if fn in CONVERTER_TYPES:
        return CONVERTER_TYPES[fn]
    if "json" in fn:
        return "json"
    return "str" if action.choices and all(isinstance(c, str) for c in action.choices) else "any"


def _snake(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def _entry(action: argparse.Action, fields: set[str]) -> tuple[str, dict[str, Any]]:
    longs = [o for o in action.option_strings if o.startswith("--")]
    if isinstance(action, argparse.BooleanOptionalAction):
        longs = [o for o in longs if not o.startswith("--no-")]
    # the name is one of the option's own spellings: a deprecated alias storing into another
    # field's dest (--monokernel-backend -> enable_amd_monokernel) keeps a name of its own
    spellings = [_snake(o) for o in longs]
    name = next((s for s in spellings if s in fields), action.dest if action.dest in spellings else spellings[0])
    flag = next((o for o in longs if _snake(o) == name), longs[0])
    spec: dict[str, Any] = {"flag": flag, "options": list(action.option_strings), "dest": action.dest}
    if isinstance(action, argparse.BooleanOptionalAction):
        spec["type"] = "flag"
        spec["negation"] = next(o for o in action.option_strings if o.startswith("--no-"))
    elif action.nargs == 0:
        spec["type"] = "flag"
        if isinstance(action, argparse._StoreFalseAction):
            spec["stores"] = False
        elif not isinstance(action, argparse._StoreTrueAction):
            spec["stores"] = _json_safe(action.const)
    else:
        scalar = _scalar_type(action)
        spec["type"] = f"list[{scalar}]" if action.nargs in ("+", "*") or isinstance(action.nargs, int) else scalar
        if isinstance(action.type, types.FunctionType) and action.type is not json.loads:
            spec["converter"] = action.type.__name__
    if action.nargs not in (None, 0):
        spec["nargs"] = action.nargs
    if action.choices is not None:
        spec["choices"] = _json_safe(action.choices)
    spec["default"] = _json_safe(action.default)
    if action.required:
        spec["required"] = True
    if action.help == argparse.SUPPRESS:
        spec["hidden"] = True
    elif action.help:
        spec["help"] = " ".join(str(action.help).strip().splitlines()[0].split())
    note = str(action.help or "").strip().lower()
    if "deprecat" in type(action).__name__.lower() or note.startswith(("deprecated", "(deprecated", "[deprecated")):
        spec["deprecated"] = True  # SGLang's DeprecatedAction classes, or help that opens with "Deprecated"
    return name, spec


def snapshot(root: Path, deps: Path, version: str) -> dict[str, Any]:
    """The snapshot dict for the SGLang tree unzipped at `root`."""
    for key in [k for k in os.environ if k.startswith("SGLANG_")]:
        del os.environ[key]
    module = _import_server_args(root, deps)
    if _TolerantLoader.partial:
        print(f"{len(_TolerantLoader.partial)} sglang modules ran part way under the stubs: "
              + ", ".join(sorted(_TolerantLoader.partial)), file=sys.stderr)
    server_args = module.ServerArgs
    parser = argparse.ArgumentParser(add_help=False)
    server_args.add_cli_args(parser)
    if dataclasses.is_dataclass(server_args):
        fields = {f.name for f in dataclasses.fields(server_args)}
    else:  # 0.5.23: a msgspec Struct
        import msgspec.structs

        fields = {f.name for f in msgspec.structs.fields(server_args)}
    entries: dict[str, dict[str, Any]] = {}
    for action in parser._actions:
        if not action.option_strings:
            continue
        if _has_stub(action.type) or _has_stub(action.choices):
            raise SystemExit(f"{action.option_strings[0]}: its type or choices come from a stubbed module; "
                             "add the package that defines them to REAL_DEPENDENCIES")
        if _has_stub(action.default) or _has_stub(action.const):
            print(f"{action.option_strings[0]}: its default comes from a stubbed module (recorded as null)",
                  file=sys.stderr)
        name, spec = _entry(action, fields)
        if name in entries:
            raise SystemExit(f"two parser actions map to the arg name {name!r}: {entries[name]['options']} "
                             f"and {spec['options']}")
        entries[name] = spec
    source = (root / SERVER_ARGS).read_bytes()
    return {
        "_source": {
            "project": "sglang",
            "version": version,
            "file": SERVER_ARGS,
            "sha256": hashlib.sha256(source).hexdigest(),
            "function": "ServerArgs.add_cli_args",
            "generator": "scripts/snapshot_sglang_args.py",
            "keys": "infraplan's snake_case arg name: the option's spelling that is a ServerArgs field, else "
                    "its argparse dest when that is one of its spellings, else its first long option; 'flag' is "
                    "the option infraplan emits, 'options' every option string the parser accepts.",
            "types": "str | int | float | json (a JSON text) | size (an int, or a string such as '128k' or "
                     "'32Ki') | any (a converter infraplan cannot check) | flag (no value) | list[<type>]; "
                     "'converter' names SGLang's value converter when it has one",
        },
        "args": entries,
    }


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--no-deps", "--disable-pip-version-check"],
                   check=True)


def _download(version: str, into: Path) -> Path:
    _pip("download", f"sglang=={version}", "--dest", str(into))
    (wheel,) = into.glob(f"sglang-{version}-*.whl")
    return wheel


def render(data: dict[str, Any]) -> str:
    """The committed file's exact text."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("version", help="SGLang release, e.g. 0.5.23")
    ap.add_argument("--wheel", type=Path, help="an sglang wheel already downloaded (default: pip download it)")
    ap.add_argument("--out", help="file to write, or - for stdout (default: infraplan/serving/server_args/VERSION.json)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sglang-snapshot-") as tmp:
        wheel = a.wheel or _download(a.version, Path(tmp))
        root = Path(tmp) / "unzipped"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(root, [n for n in zf.namelist() if n.startswith("sglang/") and n.endswith(".py")])
        # the wheel's modules are unzipped, so the snapshot is the same wherever the script runs
        deps = Path(tmp) / "deps"
        _pip("install", "--target", str(deps), *REAL_DEPENDENCIES.values())
        text = render(snapshot(root, deps, a.version))
    if a.out == "-":
        sys.stdout.write(text)
    else:
        out = Path(a.out) if a.out else OUT_DIR / f"{a.version}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out} ({len(json.loads(text)['args'])} args)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
