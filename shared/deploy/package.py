"""Build `dist/<function>.zip` for every function in the manifest: `python -m shared.deploy.package`.

A gen2 deploy uploads only the function's own directory, so each zip holds the function's `main.py`
and `requirements.txt` at its root plus the runtime part of the `shared/` package. Zips are
byte-for-byte reproducible (sorted entries, fixed timestamps and modes): Terraform names each
uploaded object by the zip's SHA-256, so an unchanged function is not redeployed.
"""

from __future__ import annotations

import argparse
import hashlib
import zipfile
from pathlib import Path

from shared.topology import Function, load_topology

REPO_ROOT = Path(__file__).resolve().parents[2]
# Local-only and deploy-only parts of shared/ that no function imports at runtime.
EXCLUDED = ("shared/stack/", "shared/deploy/", "shared/ops/", "shared/migrations/", "shared/chain/contracts/",
            "shared/chain/compile.mjs")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def shared_files(root: Path = REPO_ROOT) -> list[Path]:
    """The files of shared/ a function ships with, sorted."""
    files = []
    for path in sorted((root / "shared").rglob("*")):
        relative = path.relative_to(root).as_posix()
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        if relative.startswith(EXCLUDED):
            continue
        files.append(path)
    return files


def build(function: Function, dist: Path, root: Path = REPO_ROOT) -> Path:
    """Write dist/<name>.zip for `function`; return its path."""
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / f"{function.name}.zip"
    source = root / function.source
    entries = [(source / "main.py", "main.py"), (source / "requirements.txt", "requirements.txt")]
    entries += [(path, path.relative_to(root).as_posix()) for path in shared_files(root)]
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, name in entries:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "dist")
    args = parser.parse_args()
    for function in load_topology().functions:
        path = build(function, args.dist)
        print(f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}  "
              f"sha256={hashlib.sha256(path.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
