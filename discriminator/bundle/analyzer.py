"""Static analysis of a bundle's `model.py`, read the way the network's (unpublished) checker must be read.

The network scans `model.py` before anything runs and a rejected file costs the
submission. Its code is not public; the documented lists are the contract
(current-contract.md §3, validator-contract.md §7), and we read them
conservatively: an import that is not on the allowlist is a violation even when it
is harmless (`json`, `re`, `copy`, `__future__`), and so is any use of the blocked
builtins, not only a call. Everything here is `ast`; nothing is imported or run.

`analyze_source(text)` / `analyze_file(path)` return one `Violation` per offending
place, each with the line and what to change. The kit's own `model.py` template is
held to the same function, so the builder and `kit check` agree.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# ---------------------------------------------------------------------------- the contract, as data

#: Allowed top-level modules whose submodules are all allowed (current-contract §3, entries listed
#: without a submodule list). A blocked submodule (numpy.ctypeslib) still wins.
ALLOWED_PACKAGES: frozenset[str] = frozenset({
    "torchaudio", "transformers", "timm", "einops", "flash_attn", "cv2", "skimage", "decord", "numpy",
    "fvcore", "ultralytics", "math", "functools", "typing", "collections", "dataclasses", "enum", "abc",
    "pathlib",
})
#: Allowed modules listed with their submodules (current-contract §3: "torch (nn, nn.functional,
#: cuda.amp)", "torchvision (models, transforms)", "safetensors(.torch)", "PIL(.Image)",
#: "scipy (ndimage, signal)"). Read conservatively: the package, the listed submodules and what
#: lies below a listed submodule (torchvision.models.resnet); nothing else of the package.
ALLOWED_MODULES: frozenset[str] = frozenset({
    "torch", "torch.nn", "torch.nn.functional", "torch.cuda.amp",
    "torchvision", "torchvision.models", "torchvision.transforms",
    "safetensors", "safetensors.torch",
    "PIL", "PIL.Image",
    "scipy", "scipy.ndimage", "scipy.signal",
})
#: Allowed packages whose top-level names are submodules: `from PIL import ImageOps` imports PIL.ImageOps,
#: which must itself be allowed. (`from torch import X` names attributes such as Tensor or float16.)
SUBMODULE_NAMESPACES: frozenset[str] = frozenset({"torchvision", "safetensors", "PIL", "scipy"})
#: Blocked imports (validator-contract §7, "Blocked:"), with every submodule of each.
BLOCKED_MODULES: frozenset[str] = frozenset({
    "os", "sys", "subprocess", "shutil", "socket", "requests", "urllib", "http", "asyncio", "aiohttp", "httpx",
    "ftplib", "smtplib", "telnetlib", "pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib",
    "importlib", "builtins", "code", "runpy", "numba", "cython", "ctypes", "cffi", "mmap", "signal",
    "multiprocessing", "concurrent", "threading", "apex", "deepspeed", "tensorboard", "wandb", "mlflow",
    "boto3", "google.cloud", "azure", "sqlite3", "psycopg2", "pymongo", "redis", "tempfile", "glob", "h5py",
    "pty", "tty", "termios",
})
#: Blocked submodules and attributes, matched as dotted prefixes wherever they appear (import or use).
#: validator-contract §7 "Blocked submodules" plus current-contract §3, which extends torch.jit.script/
#: trace to any `torch.jit.*` and adds `torch.compile`; torch.hub and torch.utils.model_zoo download,
#: and §3 says there is no network ("no hub ids, no downloads").
BLOCKED_ATTRIBUTES: frozenset[str] = frozenset({
    "torch.utils.cpp_extension", "torch.jit", "torch.compile", "numpy.ctypeslib",
    "torch.hub", "torch.utils.model_zoo",
})
#: Blocked builtins (validator-contract §7 "Blocked calls"); any reference counts, not only a call
#: (current-contract §3: "any use of getattr/setattr"). `__builtins__` reaches all of them.
BLOCKED_BUILTINS: frozenset[str] = frozenset({
    "eval", "exec", "compile", "__import__", "getattr", "setattr", "globals", "locals", "__builtins__",
})

#: Violation codes.
SYNTAX_ERROR = "syntax-error"
BLOCKED_IMPORT = "blocked-import"
NOT_ALLOWLISTED = "not-allowlisted"
RELATIVE_IMPORT = "relative-import"
SIBLING_IMPORT = "sibling-import"
BLOCKED_ATTRIBUTE = "blocked-attribute"
BLOCKED_BUILTIN = "blocked-builtin"
STAR_IMPORT = "star-import"

#: What to do instead, for the modules miners reach for most.
_IMPORT_FIXES: dict[str, str] = {
    "os": "use pathlib (allowed) for paths; load_model is given weights_path",
    "sys": "drop it: model.py is imported as a plain module and needs no interpreter state",
    "glob": "use pathlib.Path.glob (allowed)",
    "shutil": "drop it: model.py must not touch the file system beyond reading weights_path",
    "tempfile": "drop it: model.py must not write files",
    "pickle": "store tensors in the safetensors file and read them with safetensors.torch.load_file",
    "json": "put configuration under model: in model_config.yaml (passed to load_model as keywords), "
            "or write it in model.py as a dict literal",
    "re": "use str methods (split, startswith, replace) instead of regular expressions",
    "copy": "build a fresh module or use tensor.clone() instead of copy/deepcopy",
    "__future__": "delete the __future__ import (the evaluator runs Python 3.10+, where it is not needed)",
    "logging": "drop logging; print nothing from model.py",
    "warnings": "drop it",
}


@dataclass(frozen=True)
class Violation:
    """One place in model.py that the network's static check would (or, read conservatively, could) reject."""

    file: str
    line: int
    col: int
    code: str  # one of the codes above
    name: str  # the offending module, attribute or builtin
    message: str
    fix: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def analyze_file(path: Path | str) -> list[Violation]:
    """Analyze `model.py` at `path`; modules that sit beside it are reported as sibling imports."""
    path = Path(path)
    source = path.read_text(encoding="utf-8", errors="replace")
    siblings = frozenset(p.stem if p.is_file() else p.name for p in path.parent.iterdir()
                         if p != path and (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").is_file())))
    return analyze_source(source, path.name, sibling_modules=siblings)


def analyze_source(source: str, filename: str = "model.py",
                   sibling_modules: Iterable[str] = ()) -> list[Violation]:
    """Every violation in `source`, in line order. A file that does not parse is one violation, not an error."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        return [Violation(filename, exc.lineno or 1, (exc.offset or 1) - 1, SYNTAX_ERROR, "",
                          f"does not parse: {exc.msg}", "fix the syntax error (python -m py_compile model.py shows it)")]
    visitor = _Analyzer(filename, frozenset(sibling_modules))
    visitor.visit(tree)
    return sorted(visitor.violations, key=lambda v: (v.line, v.col, v.code))


def module_status(module: str) -> str:
    """'blocked', 'allowed' or 'not-allowlisted' for a dotted module name."""
    if _matches_prefix(module, BLOCKED_MODULES) or _matches_prefix(module, BLOCKED_ATTRIBUTES):
        return "blocked"
    if module.split(".")[0] in ALLOWED_PACKAGES or module in ALLOWED_MODULES or _below_listed_submodule(module):
        return "allowed"
    return "not-allowlisted"


def _matches_prefix(dotted: str, prefixes: frozenset[str]) -> str | None:
    """The entry of `prefixes` that `dotted` equals or lies below, if any."""
    parts = dotted.split(".")
    for end in range(1, len(parts) + 1):
        candidate = ".".join(parts[:end])
        if candidate in prefixes:
            return candidate
    return None


def _below_listed_submodule(module: str) -> bool:
    """torchvision.models.resnet lies below the listed torchvision.models; torch.distributed lies below no listed submodule."""
    return any(module.startswith(listed + ".") for listed in ALLOWED_MODULES if "." in listed)


class _Analyzer(ast.NodeVisitor):
    def __init__(self, filename: str, siblings: frozenset[str]):
        self.filename = filename
        self.siblings = siblings
        self.violations: list[Violation] = []
        #: local name → the dotted module or attribute it was bound to by an import
        self.aliases: dict[str, str] = {}

    def _add(self, node: ast.AST, code: str, name: str, message: str, fix: str) -> None:
        self.violations.append(Violation(self.filename, getattr(node, "lineno", 1), getattr(node, "col_offset", 0),
                                         code, name, message, fix))

    # ------------------------------------------------------------------ imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.aliases[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            dots = "." * node.level
            self._add(node, RELATIVE_IMPORT, f"{dots}{node.module or ''}",
                      f"relative import `from {dots}{node.module or ''} import …` (model.py is imported alone, "
                      "outside any package: it fails)",
                      "copy what you need into model.py itself")
            return
        module = node.module or ""
        if module_status(module) == "blocked":
            self._check_module(node, module)
            return
        if any(alias.name == "*" for alias in node.names):
            self._add(node, STAR_IMPORT, f"{module}.*", f"`from {module} import *` (hides which names model.py uses, "
                      "blocked ones such as torch.compile included)", f"import the names you use from {module} explicitly")
        blocked_names = False
        for alias in node.names:
            full = f"{module}.{alias.name}"
            blocked = _matches_prefix(full, BLOCKED_ATTRIBUTES) or _matches_prefix(full, BLOCKED_MODULES)
            if alias.name != "*" and blocked:
                blocked_names = True
                self._add(node, BLOCKED_ATTRIBUTE, full, f"imports {full} (blocked: {blocked})",
                          _attribute_fix(blocked))
            elif alias.name != "*" and module in SUBMODULE_NAMESPACES:
                self._check_module(node, full)  # `from PIL import ImageOps` imports the submodule PIL.ImageOps
            if alias.name != "*":
                self.aliases[alias.asname or alias.name] = full
        # `from torch.cuda import amp` names the listed torch.cuda.amp although torch.cuda itself is not listed.
        names_allowed = all(alias.name != "*" and module_status(f"{module}.{alias.name}") == "allowed"
                            for alias in node.names)
        if not blocked_names and not names_allowed:
            self._check_module(node, module)

    def _check_module(self, node: ast.AST, module: str) -> bool:
        """Report `module` if it is blocked or not allowlisted; True when it is allowed."""
        status = module_status(module)
        top = module.split(".")[0]
        if status == "allowed":
            return True
        if status == "blocked":
            entry = _matches_prefix(module, BLOCKED_MODULES)
            if entry is not None:
                self._add(node, BLOCKED_IMPORT, module, f"imports {module} (blocked: {entry})",
                          _IMPORT_FIXES.get(top, f"remove the {entry} import"))
            else:
                entry = _matches_prefix(module, BLOCKED_ATTRIBUTES)
                self._add(node, BLOCKED_ATTRIBUTE, module, f"imports {module} (blocked: {entry})",
                          _attribute_fix(entry))
            return False
        if top in self.siblings:
            self._add(node, SIBLING_IMPORT, module, f"imports {module}, a file beside model.py (model.py is imported "
                      "alone: it fails, and it is not on the allowlist)",
                      f"paste the code you need from {top} into model.py")
        else:
            self._add(node, NOT_ALLOWLISTED, module, f"imports {module} (not on the allowlist)",
                      _IMPORT_FIXES.get(top, "use only torch, torchvision, transformers, timm, safetensors, numpy, math, "
                                             "functools, typing, collections, dataclasses, enum, abc, pathlib …"
                                             " (see docs/bundles.md)"))
        return False

    def visit_Assign(self, node: ast.Assign) -> None:
        """`t = torch` makes `t.compile` a use of torch.compile."""
        self.generic_visit(node)
        bound = self._resolve(node.value) if isinstance(node.value, ast.Attribute) else (
            self.aliases.get(node.value.id) if isinstance(node.value, ast.Name) else None)
        for target in node.targets:
            if isinstance(target, ast.Name):
                if bound is not None:
                    self.aliases[target.id] = bound
                else:
                    self.aliases.pop(target.id, None)

    # ------------------------------------------------------------------ uses
    def visit_Name(self, node: ast.Name) -> None:
        if node.id in BLOCKED_BUILTINS:
            self._add(node, BLOCKED_BUILTIN, node.id, f"uses {node.id} (blocked: any use, not only a call)",
                      _builtin_fix(node.id))
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = self._resolve(node)
        if dotted is not None:
            blocked = _matches_prefix(dotted, BLOCKED_ATTRIBUTES)
            if blocked:
                self._add(node, BLOCKED_ATTRIBUTE, dotted, f"uses {dotted} (blocked: {blocked})",
                          _attribute_fix(blocked))
                return  # one report per chain: torch.jit.trace, not also torch.jit
        self.generic_visit(node)

    def _resolve(self, node: ast.AST) -> str | None:
        """`t.jit.trace` → 'torch.jit.trace' when `t` is `import torch as t`; None when not rooted at an import."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.aliases:
            return None
        return ".".join([self.aliases[node.id], *reversed(parts)])


def _attribute_fix(entry: str | None) -> str:
    if entry in ("torch.jit", "torch.compile"):
        return "remove it: the evaluator runs the plain eager nn.Module (scripting/compiling is refused)"
    if entry in ("torch.hub", "torch.utils.model_zoo"):
        return "the sandbox has no network: build the architecture in model.py and load weights_path"
    if entry == "torch.utils.cpp_extension":
        return "write the op in plain torch"
    return "remove it"


def _builtin_fix(name: str) -> str:
    if name in ("getattr", "setattr"):
        return "use attribute access (obj.name = value) or a dict keyed by name instead"
    if name in ("globals", "locals", "__builtins__"):
        return "pass values explicitly or keep them in a dict"
    return "write the code out directly instead of building and running it"



# ---------------------------------------------------------------------------- reaching for the network

NETWORK_REACH = "network-reach"
#: Functions that fetch from a hub or URL when they are given a name rather than local files.
DOWNLOADING_CALLS: frozenset[str] = frozenset({
    "from_pretrained", "hf_hub_download", "snapshot_download", "load_state_dict_from_url", "download_url_to_file",
    "urlretrieve", "urlopen", "create_model_and_transforms", "create_model_from_pretrained",
})
#: Keyword arguments that make a model builder download its weights.
DOWNLOADING_KEYWORDS: frozenset[str] = frozenset({"pretrained", "weights", "pretrained_cfg_overlay"})
#: A Hugging Face hub id: `org/name` (a path with one slash, no leading `.`, `/` or `~`, no file suffix).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def find_network_reaches(source: str, filename: str = "model.py") -> list[Violation]:
    """Each place in `source` that downloads when it runs: a URL literal, a hub id passed to from_pretrained (and
    the hub's download helpers), a `pretrained=True` / `weights=...` argument. `torch.hub` is already a blocked
    attribute. The evaluator has no network, so a load that reaches one of these fails."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError:
        return []
    found: list[Violation] = []

    def add(node: ast.AST, name: str, message: str) -> None:
        found.append(Violation(filename, getattr(node, "lineno", 1), getattr(node, "col_offset", 0), NETWORK_REACH,
                               name, message, "ship the weights in the weights file; build the model without download"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(("http://", "https://")):
            add(node, node.value, f"a URL ({node.value[:60]})")
        if not isinstance(node, ast.Call):
            continue
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if called in DOWNLOADING_CALLS:
            literal = next((a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)), None)
            if called != "from_pretrained" or (literal is not None and _HUB_ID.fullmatch(literal)
                                                and not literal.endswith((".json", ".safetensors", ".bin", ".pt"))):
                what = f"{called}({literal!r})" if literal else f"{called}(…)"
                add(node, called, f"{what} downloads from the hub")
        for keyword in node.keywords:
            value = keyword.value
            if keyword.arg in DOWNLOADING_KEYWORDS and isinstance(value, ast.Constant) and value.value not in (None, False, ""):
                add(keyword.value, keyword.arg, f"{called}(…, {keyword.arg}={value.value!r}) downloads pretrained weights")
            elif keyword.arg == "weights" and isinstance(value, (ast.Attribute, ast.Name)):
                add(keyword.value, keyword.arg, f"{called}(…, weights={ast.unparse(value)}) downloads pretrained weights")
    return sorted(found, key=lambda v: (v.line, v.col))
