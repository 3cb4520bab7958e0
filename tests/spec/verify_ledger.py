#!/usr/bin/env python3
"""Independent verifier of a ledger store or export bundle, written from schemas/FORMAT.md alone.

verify_ledger.py (--store DIR | --bundle DIR_OR_TAR) [--key KEYSTRING | --key @FILE]
Checks frame CRC-32Cs, canonical entries, gapless seqs, the prev chain, the RFC 6962 root at
every checkpoint, and every checkpoint's Ed25519 signature and key id. Reads formats 1 to 3:
entries `"v":1` and `"v":2`, none above ledger.json's `format`; event ids unique per format
(v1: `id`; v2: `reporter.org` and `id`); key entries `"v":3` against a key history (FORMAT.md 17,
`--key @verifier.key`: each checkpoint checked with the key in force at its size). Prints
`OK: N entries, root HEX, K checkpoints` (exit 0) or the first fault (exit 1).
Needs only the standard library, `cryptography`, and `blake3` for BLAKE3 ledgers."""
import argparse, atexit, base64, binascii, hashlib, json, re, shutil, struct, sys, tarfile, tempfile
from datetime import datetime
from functools import reduce
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ENTRY_MAX, NOTE_MAX, INT_LIMIT = 66048, 65536, 2**53           # FORMAT.md 3.6, 10, 4
FORMATS = (1, 2, 3)                                             # FORMAT.md 1, 5, 9, 17
KEY_ENTRY = 3                                                   # FORMAT.md 17
TYPES = {"sent", "delivered", "handed_off", "received", "opened", "acknowledged",
         "expired", "deleted", "failed", "resent", "resolved", "notice"}
HEX64 = re.compile(r"[0-9a-f]{64}\Z")
RECORDED_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z\Z")
WARNINGS = []

class Fault(Exception):
    def __init__(self, what, seq=None):
        super().__init__(what if seq is None else f"seq {seq}: {what}")


# CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): a checksum against damage, not crypto.
CRC_TABLE = [reduce(lambda c, _: (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1, range(8), i) for i in range(256)]

def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF

def hash_function(name):
    if name not in ("sha256", "blake3"):
        raise Fault(f"ledger.json: unknown hash function {name!r}")
    if name == "sha256":
        return lambda b: hashlib.sha256(b).digest()
    try:
        import blake3  # imported only for BLAKE3 ledgers
    except ImportError:
        sys.exit("this ledger uses BLAKE3: install the `blake3` package (pip install blake3)")
    return lambda b: blake3.blake3(b).digest()

def strict_json(data):
    """Strict JSON (FORMAT.md 3.1): no duplicate keys; numbers only integers of magnitude < 2^53."""
    def pairs(items):
        if len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate key")
        return dict(items)

    def refuse(s):
        raise ValueError(f"number {s} is not allowed (integers only)")
    value = json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_float=refuse, parse_constant=refuse)
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= INT_LIMIT:
            raise ValueError(f"integer {v} is not below 2^53")
        stack.extend(v.values() if isinstance(v, dict) else v if isinstance(v, list) else ())
    return value

def canonical(v):
    """RFC 8785 for our restricted values (strings, integers < 2^53, objects, arrays, bools, null).
    json.dumps(ensure_ascii=False) escapes strings exactly as JCS does (\\" \\\\ \\b \\f \\n \\r \\t,
    other C0 controls as lowercase \\u00xx, everything else literal) and prints such integers in
    plain decimal, but JCS sorts keys by UTF-16 code units, not code points: hence the sort key."""
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(v[k]) for k in keys) + "}"
    if isinstance(v, list):
        return "[" + ",".join(canonical(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)

class Key:
    """A verifier key `name+hexid+base64(0x01 ‖ pubkey)` (FORMAT.md 8)."""
    def __init__(self, text):
        parts = text.strip().split("+", 2)  # names never hold '+', base64 may: split from the left
        raw = base64.b64decode(parts[-1], validate=True)
        if len(parts) != 3 or len(raw) != 33 or raw[0] != 0x01:
            raise Fault("verifier key: expected name+keyid+base64(0x01 ‖ 32-byte Ed25519 key)")
        self.name, hexid, self.text = parts[0], parts[1], text.strip()
        self.id = hashlib.sha256(self.name.encode() + b"\x0a\x01" + raw[1:]).digest()[:4]
        if self.id.hex() != hexid:
            raise Fault(f"verifier key: key id {hexid} does not match name and key ({self.id.hex()})")
        self.pub = Ed25519PublicKey.from_public_bytes(raw[1:])

    def verify(self, note, where):
        """Checks a signed note; returns (size, root)."""
        split = note.rfind("\n\n")
        body, sigs = note[:split + 1], note[split + 2:]
        if split < 0 or not sigs.endswith("\n"):
            raise Fault(f"{where}: not a signed note (body, empty line, signature lines)")
        signed = False
        for line in sigs[:-1].split("\n"):
            name, sep, b64 = line[2:].partition(" ")
            if not line.startswith("\u2014 ") or not sep:
                raise Fault(f"{where}: malformed signature line {line!r}")
            blob = base64.b64decode(b64, validate=True) if name == self.name else b""
            if blob[:4] != self.id:
                continue
            try:
                self.pub.verify(blob[4:], body.encode("utf-8"))
            except InvalidSignature:
                raise Fault(f"{where}: the signature by {self.name} does not verify") from None
            signed = True
        if not signed:
            raise Fault(f"{where}: no signature by key {self.name} ({self.id.hex()})")
        lines = body.split("\n")
        root = base64.b64decode(lines[2], validate=True) if len(lines) >= 4 else b""
        if lines[0] != self.name or not re.fullmatch(r"0|[1-9][0-9]*", lines[1]) or len(root) != 32:
            raise Fault(f"{where}: body is not `{self.name}`, a decimal size and a base64 32-byte root")
        return int(lines[1]), root

class KeyHistory:
    """verifier.key (FORMAT.md 17): the first key, then `key size` per rotation, oldest first."""
    def __init__(self, text):
        lines = text.strip().split("\n")
        if " " in lines[0].strip():
            raise Fault("key history: the first key has no size after it")
        self.keys = [(0, Key(lines[0]))]
        for i, line in enumerate(lines[1:], 2):
            k, sep, size = line.strip().partition(" ")
            if not sep or not re.fullmatch(r"[1-9][0-9]*", size):
                raise Fault(f"key history line {i}: expected a key, a space and a size above 0")
            key, size = Key(k), int(size)
            if size <= self.keys[-1][0] or key.name != self.keys[0][1].name or key.id in {x.id for _, x in self.keys}:
                raise Fault(f"key history line {i}: sizes must increase, names agree, key ids differ")
            self.keys.append((size, key))
        self.name = self.keys[0][1].name

    def key_for(self, size):
        return [k for start, k in self.keys if start <= size][-1]

    def verify(self, note, where):
        split = note.rfind("\n\n")
        lines = note[:split + 1].split("\n")
        size = int(lines[1]) if split >= 0 and len(lines) >= 2 and re.fullmatch(r"0|[1-9][0-9]*", lines[1]) else 0
        return self.key_for(size).verify(note, where)

def frames(data, magic, first, limit, last_file, name):
    """Yields (offset, payload) of a framed file (FORMAT.md 10); torn-tail rule of FORMAT.md 11."""
    seq = first if magic == b"LDGRSEG1" else None  # faults in segments name the entry's seq
    if len(data) < 16 or data[:8] != magic or struct.unpack("<Q", data[8:16])[0] != first:
        raise Fault(f"{name}: bad header (expected {magic.decode()} and first seq {first})", seq)
    off = 16
    while off < len(data):
        n, crc = struct.unpack("<II", data[off:off + 8]) if len(data) - off >= 8 else (1, None)
        if not 1 <= n <= limit:
            raise Fault(f"{name} offset {off}: frame length {n} out of range", seq)
        if len(data) - off < 8 + n:
            if last_file:  # an incomplete last frame: torn, never acknowledged, cut at the next open
                WARNINGS.append(f"{name} offset {off}: ends in a torn (incomplete) frame")
                return
            raise Fault(f"{name} offset {off}: file ends inside a frame", seq)
        payload = data[off + 8:off + 8 + n]
        if crc32c(payload) != crc:
            raise Fault(f"{name} offset {off}: CRC-32C mismatch (frame {crc:08x}, bytes {crc32c(payload):08x})", seq)
        yield off, payload
        off, seq = off + 8 + n, None if seq is None else seq + 1

class Chain:
    def __init__(self, H, origin, checkpoints, fmt):
        self.H, self.checkpoints, self.format = H, checkpoints, fmt   # checkpoints: size -> root
        self.origin, self.announced = origin, []           # announced: [(seq, key id)], FORMAT.md 17
        self.prev, self.seq, self.last_time = H(b"\x02" + origin.encode()), 0, ""
        self.frontier = []                                 # [(leaves, hash)], largest first
        self.ids = set()                                   # ("1", id) and ("2", reporter.org, id): FORMAT.md 3.9

    def root(self):  # MTH: fold the perfect subtrees from the right (RFC 6962 2.1)
        acc = None
        for _, h in reversed(self.frontier):
            acc = h if acc is None else self.H(b"\x01" + h + acc)
        return self.H(b"") if acc is None else acc

    def entry(self, data, where):
        seq = self.seq
        try:
            if len(data) > ENTRY_MAX:
                raise ValueError(f"entry is {len(data)} bytes, over {ENTRY_MAX}")
            e = strict_json(data)
            if not isinstance(e, dict) or set(e) != {"event", "prev", "recorded_at", "seq", "v"}:
                raise ValueError("not an object with exactly event, prev, recorded_at, seq, v")
            if type(e["v"]) is not int or e["v"] not in FORMATS:  # (True == 1 in Python)
                raise ValueError(f"entry format version {e['v']!r} is not 1, 2 or 3")
            if e["v"] > self.format:
                raise ValueError(f"entry format version {e['v']} is above the ledger's format "
                                 f"{self.format} (ledger.json)")
            if canonical(e).encode("utf-8") != data:
                raise ValueError("bytes are not in canonical (RFC 8785) form")
        except (ValueError, UnicodeError) as err:
            raise Fault(f"{where}: {err}", seq) from None
        ev, t = e["event"], e["recorded_at"]
        if e["v"] == KEY_ENTRY:
            if not isinstance(ev, dict) or set(ev) != {"key", "reason", "type"} or ev["type"] != "key_rotated" \
                    or ev["reason"] not in ("lost", "compromised", "scheduled") or not isinstance(ev["key"], str):
                raise Fault(f"{where}: a v3 entry that is not a key announcement", seq)
            key = Key(ev["key"])
            if key.name != self.origin or key.id in {k.id for _, k in self.announced}:
                raise Fault(f"{where}: the announced key is not named by the origin, or repeats a key", seq)
            self.announced.append((seq, key))
        elif not isinstance(ev, dict) or ev.get("type") not in TYPES or not all(
                isinstance(ev.get(k), str) for k in ("id", "message")):
            raise Fault(f"{where}: event lacks a known type, an id or a message", seq)
        if type(e["seq"]) is not int or e["seq"] != seq:
            raise Fault(f"{where}: expected seq {seq}, found {e['seq']!r}", seq)
        if not isinstance(e["prev"], str) or not HEX64.match(e["prev"]) or e["prev"] != self.prev.hex():
            of = "H(0x02 ‖ origin)" if seq == 0 else f"the hash of entry {seq - 1}"
            raise Fault(f"{where}: chain broken: prev is {e['prev']}, but {of} is {self.prev.hex()}", seq)
        try:
            datetime.strptime(t if RECORDED_AT.match(t) else "", "%Y-%m-%dT%H:%M:%S.%fZ")
        except (ValueError, TypeError):
            raise Fault(f"{where}: recorded_at {t!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ", seq) from None
        if t < self.last_time:
            raise Fault(f"{where}: recorded_at {t} is earlier than the previous entry's {self.last_time}", seq)
        if e["v"] == KEY_ENTRY:
            key, of = None, ""
        elif e["v"] == 1:
            key, of = ("1", ev["id"]), ""
        else:  # format 2: the message's parties on every event; ids scoped by reporter.org
            org = ev["reporter"].get("org") if isinstance(ev.get("reporter"), dict) else None
            for name, value in (("from", ev.get("from")), ("to", ev.get("to")), ("reporter.org", org)):
                if not isinstance(value, str):
                    raise Fault(f"{where}: format-2 event lacks a string `{name}`", seq)
            key, of = ("2", org, ev["id"]), f" of reporter {org}"
        if key is not None:
            if key in self.ids:
                raise Fault(f"{where}: event id {ev['id']!r}{of} is recorded twice", seq)
            self.ids.add(key)
        self.last_time, self.prev, self.seq = t, self.H(b"\x00" + data), seq + 1
        self.frontier.append((1, self.prev))
        while len(self.frontier) > 1 and self.frontier[-1][0] == self.frontier[-2][0]:
            (n, right), (_, left) = self.frontier.pop(), self.frontier.pop()
            self.frontier.append((2 * n, self.H(b"\x01" + left + right)))
        expected = self.checkpoints.get(self.seq)
        if expected is not None and self.root() != expected:
            raise Fault(f"Merkle root of the first {self.seq} entries is {self.root().hex()}, "
                        f"but the checkpoint for size {self.seq} signs {expected.hex()}", seq)

def split_notes(text):
    """checkpoints.txt (FORMAT.md 12): inside a note the empty line is followed by a signature
    line (`—`); an empty line followed by anything else separates two notes."""
    return [n for n in re.split(r"(?<=\n)\n(?!\u2014)", text) if n]

def verify(args):
    d = Path(args.store or args.bundle)
    if args.bundle and d.is_file():  # a .tar holding one directory
        tmp = Path(tempfile.mkdtemp())
        atexit.register(shutil.rmtree, tmp, True)
        with tarfile.open(d) as tar:
            tar.extractall(tmp, filter="data")
        subdirs = [p for p in tmp.iterdir() if p.is_dir()]
        d = subdirs[0] if not (tmp / "ledger.json").exists() and len(subdirs) == 1 else tmp
    info = json.loads((d / "ledger.json").read_text("utf-8"))
    if (not isinstance(info, dict) or set(info) != {"format", "origin", "hash"}
            or type(info["format"]) is not int or info["format"] not in FORMATS):
        raise Fault(f"ledger.json: expected format 1, 2 or 3 with exactly format, origin, hash; found {info!r}")
    H = hash_function(info["hash"])
    if args.key:
        key = KeyHistory(Path(args.key[1:]).read_text("utf-8") if args.key.startswith("@") else args.key)
    else:
        key = KeyHistory((d / "verifier.key").read_text("utf-8"))
        WARNINGS.append("no --key: checked with the verifier.key beside the log (integrity, not authorship)")
    if key.name != info["origin"]:
        raise Fault(f"the verifier key is for {key.name!r} but the ledger's origin is {info['origin']!r}")
    notes = []
    if args.store:
        data = (d / "checkpoints.log").read_bytes()
        for off, payload in frames(data, b"LDGRCKP1", 0, NOTE_MAX, True, "checkpoints.log"):
            notes.append((payload.decode("utf-8"), f"checkpoints.log offset {off}"))
    else:
        notes.append(((d / "checkpoint").read_text("utf-8"), "checkpoint"))
        text = (d / "checkpoints.txt").read_text("utf-8") if (d / "checkpoints.txt").exists() else ""
        notes += [(n, f"checkpoints.txt note {i + 1}") for i, n in enumerate(split_notes(text))]
    checkpoints = {}
    for note, where in notes:
        size, root = key.verify(note, where)
        if checkpoints.setdefault(size, root) != root:
            raise Fault(f"{where}: two checkpoints for size {size} sign different roots")
    if not checkpoints:
        raise Fault("no signed checkpoint")
    if checkpoints.get(0, H(b"")) != H(b""):
        raise Fault("the checkpoint of size 0 does not sign the empty root H()")
    chain = Chain(H, info["origin"], checkpoints, info["format"])
    if args.store:
        segs = sorted((int(p.name[:20]), p) for p in (d / "log").iterdir() if re.fullmatch(r"[0-9]{20}\.seg", p.name))
        if not segs or segs[0][0] != 0:
            raise Fault("log/: the first segment (seq 0) is missing", 0)
        for i, (first, p) in enumerate(segs):
            if first != chain.seq:
                raise Fault(f"{p.name}: segment starts at seq {first}, expected {chain.seq}", chain.seq)
            for off, payload in frames(p.read_bytes(), b"LDGRSEG1", first, ENTRY_MAX, i + 1 == len(segs), p.name):
                chain.entry(payload, f"{p.name} offset {off}")
    else:
        lines = (d / "entries.jsonl").read_bytes().split(b"\n")
        if lines[-1] != b"":
            raise Fault("entries.jsonl: the last line does not end with a newline", len(lines) - 1)
        for i, line in enumerate(lines[:-1]):
            chain.entry(line, f"entries.jsonl line {i + 1}")
    # FORMAT.md 17: the key entries are exactly the history's rotations within the log.
    expected = [(start - 1, k.text) for start, k in key.keys[1:] if start <= chain.seq]
    announced = [(s, k.text) for s, k in chain.announced]
    if announced != expected:
        raise Fault(f"the log's key entries {announced} are not the key history's rotations "
                    f"{expected}: obtain the ledger's verifier.key from its operator by a channel you trust")
    latest = max(checkpoints)
    if latest > chain.seq:
        raise Fault(f"a signed checkpoint covers {latest} entries but only {chain.seq} are present", chain.seq)
    if latest < chain.seq:
        WARNINGS.append(f"{chain.seq - latest} entries after the newest checkpoint (size {latest}) are not yet signed")
    return chain.seq, chain.root(), len(notes)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="a store directory (ledger.json, log/, checkpoints.log)")
    where.add_argument("--bundle", help="an export bundle directory, or a .tar of one")
    ap.add_argument("--key", help="the verifier key (or key history) you trust: the key string, or @FILE")
    args = ap.parse_args()
    try:
        n, root, k = verify(args)
    except (Fault, OSError, ValueError, UnicodeError, binascii.Error) as e:
        result, code = f"FAULT: {e}", 1
    else:
        result, code = f"OK: {n} entries, root {root.hex()}, {k} checkpoints", 0
    for w in WARNINGS:
        print(f"warning: {w}", file=sys.stderr)
    print(result)
    return code


if __name__ == "__main__":
    sys.exit(main())
