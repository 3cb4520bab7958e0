#!/usr/bin/env python3
"""Checks schemas/ against its samples, offline.

Format 1: every file in schemas/samples/valid must validate against
schemas/event.schema.json; every file in schemas/samples/invalid must be rejected;
every file in schemas/samples/invalid-code-only must be *accepted* (those are the rules
only the code can check, see the README there). Format 2: the same for
schemas/samples/v2/{valid,invalid,invalid-code-only} against
schemas/v2/event.schema.json. Each valid sample, wrapped in an entry envelope of its
format ("v":1 or "v":2), must also pass that format's entry schema. Format 3's key
entry (schemas/v3/entry.schema.json) is checked against the key of FORMAT.md 14 and
its near misses. The $refs between
the schema files resolve through a `referencing` registry built from the files
themselves, so nothing is fetched. `format` is asserted (date-time, with the installed
rfc3339-validator).

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


def check_format(registry, v, problems):
    """Checks the samples of format `v` (schemas/samples/, or schemas/samples/v2/) against
    that format's event and entry schemas; returns (valid, invalid, code-only) counts."""
    prefix = "" if v == 1 else f"v{v}/"
    event = validator(registry, f"{prefix}event.schema.json")
    entry = validator(registry, f"{prefix}entry.schema.json")

    valid = 0
    for f, doc in samples(f"{prefix}valid"):
        errors = sorted(event.iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            problems.append(f"valid sample rejected: {prefix}{f.name}: {errors[0].message}")
        valid += 1
        # The same event wrapped in an entry envelope must pass the entry schema.
        env = {"event": doc, "prev": "00" * 32, "recorded_at": "2023-05-08T07:30:00.000000Z",
               "seq": valid - 1, "v": v}
        if not entry.is_valid(env):
            problems.append(f"entry envelope of valid sample rejected: {prefix}{f.name}")
        # ... and not under another format's `v`.
        if entry.is_valid(dict(env, v=3 - v)):
            problems.append(f"{prefix}entry.schema.json accepts \"v\":{3 - v}: {f.name}")

    invalid = 0
    for f, doc in samples(f"{prefix}invalid"):
        if event.is_valid(doc):
            problems.append(f"invalid sample accepted: {prefix}{f.name}")
        invalid += 1

    code_only = 0
    for f, doc in samples(f"{prefix}invalid-code-only"):
        errors = list(event.iter_errors(doc))
        if errors:
            problems.append(
                f"code-only sample should pass the schemas but is rejected: {prefix}{f.name}: {errors[0].message}"
            )
        code_only += 1

    bad_entry = {"event": {}, "prev": "AB" * 32, "recorded_at": "2023-05-08T07:30:00Z", "seq": -1, "v": 3}
    if entry.is_valid(bad_entry):
        problems.append(f"{prefix}entry.schema.json accepts a malformed envelope")
    return valid, invalid, code_only


# The published test key of FORMAT.md 14.
TEST_KEY = "ledger.example/demo+7b8488d1+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"


def check_key_entry(registry, problems):
    """A key entry (FORMAT.md 17) passes schemas/v3/entry.schema.json; its near misses,
    and an event under "v":3, do not."""
    entry = validator(registry, "v3/entry.schema.json")
    good = {"event": {"key": TEST_KEY, "reason": "lost", "type": "key_rotated"},
            "prev": "00" * 32, "recorded_at": "2023-05-08T07:30:00.000000Z", "seq": 9, "v": 3}
    if not entry.is_valid(good):
        problems.append("v3/entry.schema.json rejects a key entry")
    # Any Ed25519 key: the second base64 character carries the key's first four bits.
    import base64, hashlib
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    for _ in range(64):
        pub = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        kid = hashlib.sha256(b"o\x0a\x01" + pub).digest()[:4].hex()
        raw = base64.b64encode(b"\x01" + pub).decode()
        key = f"o+{kid}+{raw}"
        if not entry.is_valid(dict(good, event=dict(good["event"], key=key))):
            problems.append(f"v3/entry.schema.json rejects the key {key}")
            break
    misses = [
        dict(good, v=2),
        dict(good, event=dict(good["event"], reason="bored")),
        dict(good, event=dict(good["event"], type="sent")),
        dict(good, event=dict(good["event"], note="x")),
        dict(good, event=dict(good["event"], key=TEST_KEY.replace("+7b8488d1+", "+7B8488D1+"))),
        dict(good, event=dict(good["event"], key=TEST_KEY[:-1])),
        dict(good, event={"id": "e", "type": "delivered", "message": "M", "at": "2023-05-08T00:00:00Z",
                          "reporter": {"org": "974760673", "system": "s"}}),
    ]
    for i, bad in enumerate(misses):
        if entry.is_valid(bad):
            problems.append(f"v3/entry.schema.json accepts near miss {i}")
    return 1, len(misses)


def main():
    registry = load_registry()
    problems = []
    valid, invalid, code_only = check_format(registry, 1, problems)
    valid2, invalid2, code_only2 = check_format(registry, 2, problems)
    valid3, invalid3 = check_key_entry(registry, problems)

    if problems:
        for p in problems:
            print(f"FAIL {p}", file=sys.stderr)
        print(f"schemas: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"schemas: {valid} valid accepted, {invalid} invalid rejected, "
          f"{code_only} code-only accepted (rejected only by ledger-core); "
          f"format 2: {valid2} valid accepted, {invalid2} invalid rejected, "
          f"{code_only2} code-only accepted; "
          f"format 3 key entries: {valid3} valid accepted, {invalid3} invalid rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
