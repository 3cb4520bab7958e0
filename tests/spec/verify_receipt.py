#!/usr/bin/env python3
"""An independent check of a receipt (c2sp.org/tlog-proof@v1) under a witness policy
(c2sp.org/tlog-policy), written from the C2SP specifications and schemas/FORMAT.md
only: signed-note, tlog-checkpoint, tlog-cosignature (cosignature/v1, Ed25519),
tlog-proof, tlog-policy, and the RFC 6962/9162 inclusion proof.

    verify_receipt.py RECEIPT --policy POLICY [--hash sha256|blake3] [--key HISTORY|@FILE]

With --key, the log's key history (its verifier.key after a key rotation,
schemas/FORMAT.md section 17): the checkpoint must also be signed by the key in force
at its size, so a retired key counts only for the sizes it signed.

Exit 0 when the receipt holds, 1 when it does not (saying why), 2 on bad usage.
Needs only the standard library, `cryptography`, and `blake3` for BLAKE3 ledgers."""
import argparse, base64, hashlib, struct, sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Fault(Exception):
    pass


def b64(s):
    try:
        return base64.b64decode(s, validate=True)
    except Exception:
        raise Fault(f"not base64: {s!r}")


def parse_vkey(text, want_type):
    """name+hexid+base64(type || key): the key id must be SHA-256(name || 0x0A ||
    type || key)[:4]."""
    name, keyid, raw = text.split("+", 2)
    raw = b64(raw)
    if len(raw) != 33 or raw[0] != want_type:
        raise Fault(f"key {name}: type 0x{raw[0]:02x}, expected 0x{want_type:02x}")
    kid = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if kid.hex() != keyid:
        raise Fault(f"key {name}: key id does not match")
    return name, kid, Ed25519PublicKey.from_public_bytes(raw[1:])


def parse_policy(text):
    logs, witnesses, groups, quorum = [], {}, {}, None
    for line in text.split("\n"):
        words = line.replace("\t", " ").split()
        if not words or words[0].startswith("#"):
            continue
        kind = words[0]
        if kind == "log":
            logs.append(parse_vkey(words[1], 0x01))
        elif kind == "witness":
            witnesses[words[1]] = parse_vkey(words[2], 0x04)
        elif kind == "group":
            members = words[3:]
            k = {"all": len(members), "any": 1}.get(words[2]) or int(words[2])
            groups[words[1]] = (k, members)
        elif kind == "quorum":
            quorum = words[1]
        else:
            raise Fault(f"policy: unknown line {line!r}")
    if quorum is None or not logs:
        raise Fault("policy: needs a log line and a quorum line")
    return logs, witnesses, groups, quorum


def parse_note(note):
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise Fault("checkpoint: not a signed note")
    text, sigs = note[: split + 1], note[split + 2 :]
    out = []
    for line in sigs.rstrip("\n").split("\n"):
        if not line.startswith("\u2014 "):
            raise Fault(f"checkpoint: bad signature line {line!r}")
        name, blob = line[2:].split(" ", 1)
        blob = b64(blob)
        out.append((name, blob[:4], blob[4:]))
    return text, out


def check_checkpoint(note, policy):
    logs, witnesses, groups, quorum = policy
    text, sigs = parse_note(note)
    origin, size, root = text.split("\n")[:3]
    signed = False
    for name, kid, key in logs:
        for sname, skid, sig in sigs:
            if (sname, skid) == (name, kid):
                try:
                    key.verify(sig, text.encode())
                except InvalidSignature:
                    raise Fault(f"the log signature of {name} does not verify")
                signed = name == origin
    if not signed:
        raise Fault("the checkpoint is not signed by a log of the policy")
    ok = set()
    for wname, (name, kid, key) in witnesses.items():
        for sname, skid, sig in sigs:
            if (sname, skid) != (name, kid):
                continue
            if len(sig) != 72:
                raise Fault(f"cosignature of {wname}: {len(sig)} bytes")
            (t,) = struct.unpack(">Q", sig[:8])
            msg = f"cosignature/v1\ntime {t}\n".encode() + text.encode()
            try:
                key.verify(sig[8:], msg)
            except InvalidSignature:
                raise Fault(f"the cosignature of {wname} does not verify")
            ok.add(wname)

    def satisfied(n):
        if n in witnesses:
            return n in ok
        k, members = groups[n]
        return sum(1 for m in members if satisfied(m)) >= k

    if quorum != "none" and not satisfied(quorum):
        raise Fault(f"quorum {quorum} not met: cosigned by {sorted(ok)}")
    return origin, int(size), b64(root), sorted(ok)


def check_key_in_force(note, history_text):
    """FORMAT.md 17: the key in force at a size is the last line of the key history
    whose first size (0 for the first line) is at most that size; it must have signed."""
    lines = [l.strip() for l in history_text.strip().split("\n")]
    if " " in lines[0]:
        raise Fault("key history: the first key has no size after it")
    keys = [(0, parse_vkey(lines[0], 0x01))]
    for line in lines[1:]:
        k, _, start = line.partition(" ")
        if not start.isdigit() or start.startswith("0") or int(start) <= keys[-1][0]:
            raise Fault(f"key history: bad line {line!r}")
        keys.append((int(start), parse_vkey(k, 0x01)))
    text, sigs = parse_note(note)
    size = int(text.split("\n")[1])
    name, kid, key = [k for start, k in keys if start <= size][-1]
    for sname, skid, sig in sigs:
        if (sname, skid) == (name, kid):
            try:
                key.verify(sig, text.encode())
                return
            except InvalidSignature:
                break
    raise Fault(f"the checkpoint of size {size} is not signed by the key in force at that size ({kid.hex()})")


def verify_inclusion(H, leaf, index, size, path, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        raise Fault("index beyond the tree")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise Fault("inclusion path too long")
        if fn & 1 or fn == sn:
            r = H(b"\x01" + p + r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = H(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise Fault("the entry is not included under the checkpoint's root")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("receipt")
    ap.add_argument("--policy", required=True)
    ap.add_argument("--hash", default="sha256", choices=["sha256", "blake3"])
    ap.add_argument("--key", help="the log's key history: the text, or @FILE")
    a = ap.parse_args()
    if a.hash == "blake3":
        import blake3

        H = lambda b: blake3.blake3(b).digest()
    else:
        H = lambda b: hashlib.sha256(b).digest()
    try:
        lines = open(a.receipt, encoding="utf-8").read().split("\n")
        if lines[0] != "c2sp.org/tlog-proof@v1":
            raise Fault("not a c2sp.org/tlog-proof@v1 file")
        i, entry = 1, None
        if lines[i].startswith("extra "):
            entry, i = b64(lines[i][6:]), i + 1
        if not lines[i].startswith("index "):
            raise Fault("no index line")
        index, i, path = int(lines[i][6:]), i + 1, []
        while lines[i] != "":
            path.append(b64(lines[i]))
            i += 1
        note = "\n".join(lines[i + 1 :])
        if entry is None:
            raise Fault("the receipt carries no entry")
        origin, size, root, cosigned = check_checkpoint(note, parse_policy(open(a.policy).read()))
        if a.key:
            history = open(a.key[1:]).read() if a.key.startswith("@") else a.key
            check_key_in_force(note, history)
        verify_inclusion(H, H(b"\x00" + entry), index, size, path, root)
    except Fault as f:
        print(f"FAILED: {f}")
        return 1
    print(f"OK: entry {index} in {origin} at size {size}, cosigned by {', '.join(cosigned) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
