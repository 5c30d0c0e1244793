"""Build `dist/<function>.zip` for every function in the manifest: `python -m shared.deploy.package`.

A gen2 deploy uploads only the function's own directory, so each zip holds the function's `main.py`
and `requirements.txt` at its root plus exactly the part of the `shared/` package that main.py imports,
followed import by import (its *import closure*), and the data files those modules name beside
themselves (`Path(__file__).with_name("openapi.yaml")`). A zip that holds the topology manifest also holds
its compiled form, written here from the manifest (shared/topology.py, compiled_manifest).

An edit to settle's code therefore changes settle's zip and no other, and nothing of the local stack, the
migrations or the deploy tooling ships unless a function imports it (none does:
tests/integration/test_packages.py holds both to account).

Zips are byte-for-byte reproducible (sorted entries, fixed timestamps and modes): Terraform names each
uploaded object by the zip's SHA-256, so an unchanged function is not redeployed.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import zipfile
from pathlib import Path

from shared.topology import MANIFEST_PATH, Function, compiled_manifest, load_topology

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "shared"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def _module_file(root: Path, module: str) -> Path | None:
    """The file of `module` (a dotted name under shared) in the source tree, or None if it is not one."""
    path = root.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _imported_modules(tree: ast.AST) -> set[str]:
    """Every shared.* name an import statement in `tree` mentions, anywhere (lazy imports included).

    `from shared.x import y` yields both shared.x and shared.x.y: y may be a submodule; the caller keeps
    only the names that are files.
    """
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _data_files(tree: ast.AST, module_file: Path) -> list[Path]:
    """The files a module names beside itself with `Path(__file__).with_name("…")` (a directory: all of it)."""
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "with_name"
                and len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)):
            target = module_file.with_name(node.args[0].value)
            if target.is_dir():
                found += [path for path in target.rglob("*") if path.is_file()]
            elif target.is_file():
                found.append(target)
    return found


def import_closure(entry: Path, root: Path = REPO_ROOT) -> list[Path]:
    """The files of shared/ that `entry` needs at runtime: modules it imports, transitively, with the
    `__init__.py` of every package on the way and the data files they name; sorted."""
    files: set[Path] = set()
    pending = [entry]
    seen: set[Path] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        tree = ast.parse(current.read_text(), filename=str(current))
        if current != entry:
            files.add(current)
            files.update(_data_files(tree, current))
        for module in _imported_modules(tree):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):  # the packages on the way are imported too
                found = _module_file(root, ".".join(parts[:depth]))
                if found is not None and found not in seen:
                    pending.append(found)
    return sorted(files)


def build(function: Function, dist: Path, root: Path = REPO_ROOT) -> Path:
    """Write dist/<name>.zip for `function`; return its path."""
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / f"{function.name}.zip"
    source = root / function.source
    files = [(source / "main.py", "main.py"), (source / "requirements.txt", "requirements.txt")]
    files += [(path, path.relative_to(root).as_posix()) for path in import_closure(source / "main.py", root)]
    entries = [(name, path.read_bytes()) for path, name in files]
    manifest = root / PACKAGE / MANIFEST_PATH.name
    if manifest in {path for path, _ in files}:  # the manifest ships compiled too (see compiled_manifest)
        entries.append((manifest.with_suffix(".json").relative_to(root).as_posix(),
                        compiled_manifest(manifest.read_bytes())))
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "dist")
    args = parser.parse_args()
    for function in load_topology().functions:
        path = build(function, args.dist)
        with zipfile.ZipFile(path) as archive:
            count = len(archive.namelist())
        print(f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}  {count} files  "
              f"sha256={hashlib.sha256(path.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
