"""The Google provider's schema for the types terraform/ uses, extracted once into a small committed file.

    python -m shared.deploy.provider_schema          # rewrite terraform/provider-schema.json

Providers cannot be downloaded here, but npm serves the provider's generated CDKTF bindings,
`@cdktf/provider-google`, whose version 14.13.1 is generated from hashicorp/google 6.14.1 (the version
`terraform/versions.tf` pins). Each resource's `lib/<name>/index.js` spells its schema out: the HCL
synthesiser lists every argument and nested block with `isBlock`, and each block's own synthesiser lists
its content; getters name every attribute that can be read, computed ones included. This module reads
those files straight from the package tarball (about 25 MB, fetched with `npm pack`, never installed)
for the types found in terraform/**/*.tf, and writes the result, sorted, to terraform/provider-schema.json.
`tests/integration/test_terraform.py` checks every resource, argument, nested block and attribute
reference against it offline.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
SCHEMA_PATH = TERRAFORM_DIR / "provider-schema.json"
# The bindings generated from the provider version versions.tf pins (checked by the tests).
BINDINGS = "@cdktf/provider-google"
BINDINGS_VERSION = "14.13.1"
PROVIDER_VERSION = "6.14.1"

_USED = re.compile(r'^(resource|data) "(google_[a-z0-9_]+)"', re.MULTILINE)
_ENTRY = re.compile(r'(\w+): \{\s*value: ([^\n]*),\s*isBlock: (true|false),\s*type: "(\w+)"')
_BLOCK_FUNCTION = re.compile(r"(\w+)ToHclTerraform\b")
_GETTER = re.compile(r"get\w*Attribute\('(\w+)'\)")


def used_types(terraform_dir: Path = TERRAFORM_DIR) -> dict[str, set[str]]:
    """{"resource": {...}, "data": {...}}: the google types terraform/ (and its bootstrap stage) declares."""
    used: dict[str, set[str]] = {"resource": set(), "data": set()}
    for path in sorted(terraform_dir.rglob("*.tf")):
        for kind, name in _USED.findall(path.read_text()):
            used[kind].add(name)
    return used


def package_directory(kind: str, type_name: str) -> str:
    """The bindings' directory of a type: google_sql_user -> sql-user, data google_project -> data-google-project."""
    stem = type_name.removeprefix("google_").replace("_", "-")
    return f"data-google-{stem}" if kind == "data" else stem


def _function_body(source: str, name: str) -> str:
    start = source.index(f"function {name}(struct)")
    end = source.find("\nexports.", start)
    return source[start:end]


def _block(source: str, body: str) -> dict:
    """Arguments and nested blocks declared by one HCL synthesiser body."""
    arguments, blocks = [], {}
    for name, value, is_block, _kind in _ENTRY.findall(body):
        if is_block == "true":
            inner = [f for f in _BLOCK_FUNCTION.findall(value) if not value.startswith("cdktf." + f)]
            blocks[name] = _block(source, _function_body(source, inner[0] + "ToHclTerraform"))
        else:
            arguments.append(name)
    return {"arguments": sorted(arguments), "blocks": dict(sorted(blocks.items()))}


def parse_type(source: str) -> dict:
    """The schema of one resource or data source, from its generated index.js."""
    start = source.index("synthesizeHclAttributes() {")
    body = source[start:source.index("return Object.fromEntries", start)]
    schema = _block(source, body)
    schema["attributes"] = sorted(set(_GETTER.findall(source)) | set(schema["arguments"]) | set(schema["blocks"]))
    return schema


def extract(tarball: Path, used: dict[str, set[str]]) -> dict:
    """The schema of every used type, read from the bindings' tarball."""
    result: dict = {"provider": f"hashicorp/google {PROVIDER_VERSION}", "bindings": f"{BINDINGS} {BINDINGS_VERSION}",
                    "resource": {}, "data": {}}
    with tarfile.open(tarball) as archive:
        version = json.load(archive.extractfile("package/package.json"))["version"]  # type: ignore[arg-type]
        if version != BINDINGS_VERSION:
            raise SystemExit(f"{tarball} is {BINDINGS} {version}, not {BINDINGS_VERSION}")
        for kind, names in used.items():
            for name in sorted(names):
                member = archive.extractfile(f"package/lib/{package_directory(kind, name)}/index.js")
                source = member.read().decode()  # type: ignore[union-attr]
                if f'"{name}"' not in source:
                    raise SystemExit(f"{name}: not the type the bindings' {package_directory(kind, name)} define")
                result[kind][name] = parse_type(source)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tarball", type=Path, help="an already downloaded bindings tarball (else npm pack)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tarball = args.tarball
        if tarball is None:
            subprocess.run(["npm", "pack", "--silent", f"{BINDINGS}@{BINDINGS_VERSION}"], cwd=scratch, check=True,
                           stdout=subprocess.DEVNULL)
            [tarball] = Path(scratch).glob("*.tgz")
        schema = extract(tarball, used_types())
    SCHEMA_PATH.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"{SCHEMA_PATH.relative_to(REPO_ROOT)}: {len(schema['resource'])} resources, "
          f"{len(schema['data'])} data sources from {BINDINGS} {BINDINGS_VERSION}")


if __name__ == "__main__":
    main()
