#!/usr/bin/env python3
"""Checks schemas/ against its samples, offline.

Every file in schemas/samples/valid must validate against schemas/event.schema.json;
every file in schemas/samples/invalid must be rejected; every file in
schemas/samples/invalid-code-only must be *accepted* (those are the rules only the
code can check, see the README there). The $refs between the schema files resolve
through a `referencing` registry built from the files themselves, so nothing is
fetched. `format` is asserted (date-time, with the installed rfc3339-validator).

Exit 0 and print a summary line when all holds, 1 with the offending files if not.

Note: Python's `re` (which jsonschema uses for `pattern`) lets `$` match before a
final "\\n", unlike ECMA-262; no sample relies on either behaviour.
"""
import json
import sys
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2] / "schemas"


def load_registry():
    resources = []
    for path in sorted(ROOT.rglob("*.schema.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)  # each schema is itself valid 2020-12
        if "$id" not in schema:
            sys.exit(f"{path}: schema has no $id")
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def validator(registry, name):
    schema = json.loads((ROOT / name).read_text(encoding="utf-8"))
    return Draft202012Validator(
        schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def samples(kind):
    files = sorted((ROOT / "samples" / kind).glob("*.json"))
    if not files:
        sys.exit(f"no samples in {ROOT / 'samples' / kind}")
    for f in files:
        yield f, json.loads(f.read_text(encoding="utf-8"))


def main():
    registry = load_registry()
    event = validator(registry, "event.schema.json")
    entry = validator(registry, "entry.schema.json")
    problems = []

    valid = 0
    for f, doc in samples("valid"):
        errors = sorted(event.iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            problems.append(f"valid sample rejected: {f.name}: {errors[0].message}")
        valid += 1
        # The same event wrapped in an entry envelope must pass entry.schema.json.
        env = {"event": doc, "prev": "00" * 32, "recorded_at": "2023-05-08T07:30:00.000000Z",
               "seq": valid - 1, "v": 1}
        if not entry.is_valid(env):
            problems.append(f"entry envelope of valid sample rejected: {f.name}")

    invalid = 0
    for f, doc in samples("invalid"):
        if event.is_valid(doc):
            problems.append(f"invalid sample accepted: {f.name}")
        invalid += 1

    code_only = 0
    for f, doc in samples("invalid-code-only"):
        errors = list(event.iter_errors(doc))
        if errors:
            problems.append(
                f"code-only sample should pass the schemas but is rejected: {f.name}: {errors[0].message}"
            )
        code_only += 1

    bad_entry = {"event": {}, "prev": "AB" * 32, "recorded_at": "2023-05-08T07:30:00Z", "seq": -1, "v": 2}
    if entry.is_valid(bad_entry):
        problems.append("entry.schema.json accepts a malformed envelope")

    if problems:
        for p in problems:
            print(f"FAIL {p}", file=sys.stderr)
        print(f"schemas: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"schemas: {valid} valid accepted, {invalid} invalid rejected, "
          f"{code_only} code-only accepted (rejected only by ledger-core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
