"""Makes samples/incident-2023.jsonl: a small, real-looking slice of the 2018–2023
incident (fictitious organisation numbers with valid check digits). Deterministic:
run `python3 samples/make_sample.py` to regenerate the same file."""
import hashlib, json, random
from datetime import datetime, timedelta, timezone

rnd = random.Random(2023)

def orgnr(seed):
    while True:
        d = [rnd.randint(0, 9) for _ in range(8)]
        d[0] = 9
        s = sum(a * b for a, b in zip(d, [3, 2, 7, 6, 5, 4, 3, 2])) % 11
        c = 11 - s
        if c == 10:
            continue
        return "".join(map(str, d)) + str(0 if c == 11 else c)

police = {name: orgnr(name) for name in ["Øst politidistrikt", "Sør-Vest politidistrikt", "Trøndelag politidistrikt"]}
kommuner = {name: orgnr(name) for name in ["Bergen kommune", "Lillestrøm kommune", "Stavanger kommune", "Trondheim kommune"]}
events, seqs, parties = [], {}, {}

def ev(kind, msg, at, org, rsys, **kw):
    """One format-2 event (schemas/FORMAT.md 3.9): every event names its message's
    parties; a resend's new message keeps its original's."""
    seqs[(org, rsys)] = seqs.get((org, rsys), 0) + 1
    e = {"id": f"{rsys}-{org}-e{seqs[(org, rsys)]}", "type": kind, "message": msg,
         "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "reporter": {"org": org, "system": rsys, "seq": seqs[(org, rsys)]}}
    e.update(kw)
    if kind == "sent":
        parties[msg] = (e["from"], e["to"])
    else:
        e["from"], e["to"] = parties[msg]
    if kind == "resent":
        parties[e["new_message"]] = parties[msg]
    events.append(e)

t0 = datetime(2022, 11, 1, 8, 0, tzinfo=timezone.utc)
n = 0
for pname, porg in police.items():
    for kname, korg in kommuner.items():
        for i in range(4):
            n += 1
            msg = f"POL-{2022 + i % 2}-{n:05d}"
            at = t0 + timedelta(days=rnd.randint(0, 180), minutes=rnd.randint(0, 600))
            cat = rnd.choice(["bekymringsmelding", "bekymringsmelding", "underretning"])
            digest = "sha256:" + hashlib.sha256(f"content of {msg}".encode()).hexdigest()
            corr = f"{rnd.getrandbits(128):032x}"
            ev("sent", msg, at, porg, "websak", to=korg, channel="altinn", category=cat,
               content_digest=digest, expires_at=(at + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
               refs={"altinn": corr, "websak": f"{at.year}/{n:05d}-1"}, **{"from": porg})
            ev("delivered", msg, at + timedelta(minutes=1), porg, "altinn-adapter")
            fate = rnd.random()
            if fate < 0.55:   # opened in time and acknowledged
                ev("opened", msg, at + timedelta(days=rnd.randint(0, 5), hours=2), korg, "altinn-adapter", by_role="barnevernsleder")
                ev("acknowledged", msg, at + timedelta(days=6), korg, "altinn-adapter")
            elif fate < 0.85:  # the receiver lacked the Altinn roles: never opened, deleted after 30 days
                ev("expired", msg, at + timedelta(days=30), porg, "altinn-adapter")
            else:              # opened, but late
                ev("opened", msg, at + timedelta(days=rnd.randint(9, 28)), korg, "altinn-adapter", by_role="saksbehandler")

# The portal → Familia hand-off that lost reports (Bergen).
for i in range(6):
    n += 1
    msg = f"PORTAL-{n:05d}"
    at = t0 + timedelta(days=30 + i * 9)
    ev("sent", msg, at, "991825827", "bekymringsmelding-portal", to=kommuner["Bergen kommune"], channel="portal",
       category="bekymringsmelding", content_digest="blake3:" + hashlib.sha256(msg.encode()).hexdigest(), **{"from": "991825827"})
    ev("handed_off", msg, at + timedelta(minutes=5), kommuner["Bergen kommune"], "fiks-mottak",
       from_system="fiks-mottak", to_system="familia")
    if i % 3 != 0:
        ev("received", msg, at + timedelta(minutes=6), kommuner["Bergen kommune"], "familia", system="familia", journal_ref=f"2023/{n}")

# 2023: unopened reports found and resent by letter.
for e in [x for x in events if x["type"] == "expired"][:4]:
    msg = e["message"]
    at = datetime(2023, 5, 20, 9, 0, tzinfo=timezone.utc)
    porg = e["reporter"]["org"]
    ev("resent", msg, at, porg, "websak", new_message=msg + "-BREV", channel="letter")
    ev("received", msg + "-BREV", at + timedelta(days=3), porg, "websak", system="post-kvittering")
    ev("resolved", msg, at + timedelta(days=4), porg, "websak", outcome="resent_and_confirmed")

events.sort(key=lambda e: e["at"])
with open(__file__.replace("make_sample.py", "incident-2023.jsonl"), "w") as f:
    for e in events:
        f.write(json.dumps(e, ensure_ascii=False) + "\n")
print(len(events), "events")
