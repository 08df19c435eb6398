"""``bavard privacy report``: what left the box, per purpose and destination.

What an owner shows to anyone who asks: for each purpose, its consent now;
for each destination of it, how many batches, items (per class) and bytes
(as sent on the wire) it acknowledged, the time range of that data, which
signals, event kinds and channels' frames it held (with counts); what was
purged and why; and the consent history. Built from the privacy ledger
(agent.privacy.ledger) and the consent book (agent.privacy.consent).
``since`` bounds all of it; the signals' and events' counts are kept per UTC
day, so they start at the beginning of the day of ``since``.
"""

from __future__ import annotations

import time
from typing import Any

from agent.privacy.consent import ConsentBook
from agent.privacy.destinations import LOCAL
from agent.privacy.ledger import Ledger
from agent.units import human_bytes, local_time

CONTENT_KEYS = {"signal": "signals", "event": "events", "frames": "frames"}
NOTE_DAYS = ("counts of signals, events and frames are kept per day (UTC): with a start "
             "time they cover whole days from the day of it")


def build(ledger: Ledger, consent: ConsentBook, since: float | None = None,
          purposes: list[str] | None = None) -> dict[str, Any]:
    """The report as one JSON-able document; ``purposes``: the configuration's, listed
    even when nothing of them left the box."""
    totals = ledger.totals(since)
    contents = ledger.contents(since)
    purges = ledger.purges(since)
    history = consent.history(since)
    grants = consent.grants()
    names = list(purposes or ())
    for name in sorted({t["purpose"] for t in totals} | {p["purpose"] for p in purges}
                       | {h["purpose"] for h in history} | set(grants)):
        if name not in names:
            names.append(name)
    dests: dict[tuple[str, str], dict[str, Any]] = {}

    def dest(purpose: str, destination: str) -> dict[str, Any]:
        key = (purpose, destination)
        if key not in dests:
            dests[key] = {"destination": destination, "batches": 0, "bytes": 0, "items": 0,
                          "classes": {}, "ts_first": None, "ts_last": None,
                          "first_sent": None, "last_sent": None, "signals": {},
                          "events": {}, "frames": {},
                          "purged": {"purges": 0, "items": 0, "bytes": 0}}
        return dests[key]

    for t in totals:
        d = dest(t["purpose"], t["destination"])
        d.update({k: v for k, v in t.items() if k not in ("purpose", "destination")})
    for purpose, destination, kind, name, count in contents:
        dest(purpose, destination)[CONTENT_KEYS[kind]][name] = count
    for p in purges:
        purged = dest(p["purpose"], p["destination"])["purged"]
        purged["purges"] += 1
        purged["items"] += p["items"]
        purged["bytes"] += p["bytes"]
    out = []
    for name in names:
        mine = [d for (p, _), d in sorted(dests.items()) if p == name]
        grant = grants.get(name)
        out.append({"purpose": name,
                    "consent": {"granted": True, **grant} if grant else {"granted": False},
                    "batches": sum(d["batches"] for d in mine),
                    "bytes": sum(d["bytes"] for d in mine),
                    "items": sum(d["items"] for d in mine),
                    "purged_items": sum(d["purged"]["items"] for d in mine),
                    "purged_bytes": sum(d["purged"]["bytes"] for d in mine),
                    "destinations": mine})
    return {"generated": ledger.clock(), "since": since, "purposes": out, "purges": purges,
            "consent_history": history,
            "totals": {"batches": sum(p["batches"] for p in out),
                       "bytes": sum(p["bytes"] for p in out),
                       "items": sum(p["items"] for p in out),
                       "purged_items": sum(p["purged_items"] for p in out),
                       "purged_bytes": sum(p["purged_bytes"] for p in out)},
            "ledger_failures": ledger.failures, "consent_problem": consent.problem,
            "notes": [NOTE_DAYS]}


def render(doc: dict[str, Any], top: int = 20) -> str:
    """The report as text for people; ``top``: signals and events listed per
    destination (the rest counted in one line)."""
    since = f"since {when(doc['since'])}" if doc["since"] is not None else "since the start"
    t = doc["totals"]
    lines = [f"What left this box, {since} (report of {when(doc['generated'])})",
             f"  in all: {n(t['batches'], 'batch')}, {n(t['items'], 'item')}, "
             f"{human_bytes(t['bytes'])} ({t['bytes']:,} bytes); purged before upload: "
             f"{n(t['purged_items'], 'item')} ({human_bytes(t['purged_bytes'])})"]
    if doc.get("consent_problem"):
        lines.append(f"  the consent file grants nothing: {doc['consent_problem']}")
    for p in doc["purposes"]:
        lines += ["", f"{p['purpose']}: {consent_words(p['consent'])}"]
        if not p["destinations"]:
            lines.append("  nothing left the box")
        for d in p["destinations"]:
            lines += _destination(d, top)
    lines += ["", "Purged (pending data deleted before upload):"]
    lines += [f"  {when(g['time'])}  {g['destination']} ({g['purpose']}): "
              f"{n(g['items'], 'item')} ({human_bytes(g['bytes'])}), {g['reason']}"
              for g in doc["purges"]]
    if not doc["purges"]:
        lines.append("  nothing")
    lines += ["", "Consent history:"]
    lines += [f"  {when(h['time'])}  {history_words(h)}" for h in doc["consent_history"]]
    if not doc["consent_history"]:
        lines.append("  no change")
    if doc.get("ledger_failures"):
        lines += ["", f"note: {doc['ledger_failures']} records could not be written to the "
                      "ledger since the service started (its log says why)"]
    lines += ["", f"note: {NOTE_DAYS}"]
    return "\n".join(lines)


def _destination(d: dict[str, Any], top: int) -> list[str]:
    classes = ", ".join(f"{count:,} {k}" for k, count in sorted(d["classes"].items())
                        if count)
    lines = [f"  to {d['destination']}: {n(d['batches'], 'batch')}, {n(d['items'], 'item')}"
             + (f" ({classes})" if classes else "")
             + f", {human_bytes(d['bytes'])} ({d['bytes']:,} bytes)"]
    if d["batches"]:
        lines.append(f"    data from {when(d['ts_first'])} to {when(d['ts_last'])}, sent "
                     f"{when(d['first_sent'])} to {when(d['last_sent'])}")
    for key in ("signals", "events", "frames"):
        counts = d[key]
        if not counts:
            continue
        shown = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        words = ", ".join(f"{name} {count:,}" for name, count in shown[:top])
        more = (f" and {len(shown) - top} more ({sum(c for _, c in shown[top:]):,})"
                if len(shown) > top else "")
        lines.append(f"    {key}: {words}{more}")
    g = d["purged"]
    if g["purges"]:
        lines.append(f"    purged: {n(g['items'], 'item')} ({human_bytes(g['bytes'])}) in "
                     f"{n(g['purges'], 'purge')}")
    return lines


def consent_words(c: dict[str, Any]) -> str:
    if not c.get("granted"):
        return "not granted"
    until = f" until {until_words(c['until'])}" if c.get("until") is not None else ""
    who = f" by uid {c['uid']}" if c.get("uid") is not None else ""
    return f"granted{who} on {when(c['since'])}{until}"


def history_words(h: dict[str, Any]) -> str:
    who = f" by uid {h['uid']}" if h.get("uid") is not None else ""
    until = f" until {until_words(h['until'])}" if h.get("until") is not None else ""
    words = {"grant": f"{h['purpose']} granted{who}{until}",
             "revoke": f"{h['purpose']} revoked{who}",
             "expire": f"{h['purpose']}'s consent expired"}[h["action"]]
    return words + (f" ({h['note']})" if h.get("note") else "")


def n(count: int, word: str) -> str:
    """``1 batch``, ``2 batches``, ``1,204 items``."""
    if count == 1:
        return f"1 {word}"
    return f"{count:,} {word}{'es' if word.endswith(('s', 'sh', 'ch', 'x')) else 's'}"


def until_words(t: float) -> str:
    """The end of a grant: ``the end of 2026-06-30`` when it is a local midnight (what
    ``--until 2026-06-30`` gives), else its local time."""
    try:
        local = time.localtime(t)
    except (OverflowError, ValueError, OSError):
        return repr(t)
    if local.tm_hour == local.tm_min == local.tm_sec == 0 and t == int(t):
        return "the end of " + time.strftime("%Y-%m-%d", time.localtime(t - 1))
    return when(t)


def when(t: float | None) -> str:
    """Local time, to the second; ``-`` when unknown."""
    return local_time(t)


# --- the answers of `bavard consent grant|revoke|show` (the service's and the files')

def describe(book: ConsentBook, purposes: dict[str, Any],
             destinations: dict[str, str]) -> dict[str, Any]:
    """What ``bavard consent show`` shows: each purpose, whether it is granted (since,
    until, by whom), what it may receive and which destinations receive it
    (``destinations``: name -> purpose)."""
    grants = book.grants()
    out = []
    for name, p in purposes.items():
        grant = grants.get(name)
        out.append({"purpose": name, "description": p.description,
                    "granted": grant is not None, **(grant or {}),
                    "receives": {"signals": list(p.signals), "events": list(p.events),
                                 "frames": p.frames, "geohash": p.geohash},
                    "destinations": [d for d, purpose in destinations.items()
                                     if purpose == name]})
    unknown = sorted(set(grants) - set(purposes))
    return {"file": str(book.path), "problem": book.problem, "purposes": out,
            "granted_unknown": unknown}



def granted_answer(change: dict[str, Any], destinations: list[str]) -> dict[str, Any]:
    """The answer to a grant: what changed (agent.privacy.consent) and a sentence."""
    purpose = change["purpose"]
    until = (f" until {until_words(change['until'])}" if change.get("until") is not None
             else "")
    if destinations == [LOCAL]:
        who = "the box keeps its data for the technician (it never leaves the box)"
    elif destinations:
        who = (f"destination {destinations[0]} receives" if len(destinations) == 1
               else f"destinations {_and(destinations)} receive") + " its data from now on"
    else:
        who = "no destination of the configuration receives it"

    return {**change, "destinations": destinations,
            "message": f"granted {purpose}{until}: {who}"}


def revoked_answer(change: dict[str, Any], purged: dict[str, dict[str, int]]
                   ) -> dict[str, Any]:
    """The answer to a revoke: what changed, what the purge deleted per destination
    (``{"insurer": {"items", "bytes"}}``), their sums and a sentence."""
    purpose = change["purpose"]
    items = sum(p["items"] for p in purged.values())
    nbytes = sum(p["bytes"] for p in purged.values())
    names = sorted(purged)
    if not names:
        what = "no destination receives it: nothing to purge"
    elif not items:
        what = f"nothing was pending for {_dests(names)}"
    else:
        what = (f"purged {n(items, 'item')} ({human_bytes(nbytes)}) pending for "
                f"{_dests(names)}")
        if len(names) > 1:
            what += " (" + "; ".join(f"{d}: {n(purged[d]['items'], 'item')}, "
                                     f"{human_bytes(purged[d]['bytes'])}" for d in names) + ")"
    was = "" if change.get("previous") else " (it was not granted)"
    return {**change, "purged": purged, "items": items, "bytes": nbytes,
            "message": f"revoked {purpose}{was}: {what}"}


def _dests(names: list[str]) -> str:
    return f"destination {names[0]}" if len(names) == 1 else f"destinations {_and(names)}"


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
