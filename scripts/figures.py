"""Fill the README's and the docs' benchmark figures from benchmarks/results/*.json.

    python3 scripts/figures.py          # rewrite the blocks in place
    python3 scripts/figures.py --check  # exit 1 if a block is not what the files say

A block is everything between ``<!-- figures: NAME -->`` and ``<!-- /figures -->`` in
README.md and docs/*.md; NAME is ``readme-table`` (the README's table, one row per
benchmark) or a benchmark's name (its detailed table). Every figure carries where it
came from (commit, date, and "loaded" when the machine was busy). Nothing here is
typed by hand: a benchmark that has not written its file says so.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- figures: ([\w-]+) -->\n)(.*?)(<!-- /figures -->)", re.S)

# The README's rows, in order: the command that makes the figures, and what they mean.
ROWS = [
    ("bench_switchover", "--runs 5"), ("bench_false_alarms", "--minutes 10"),
    ("bench_flaps", "--minutes 10"), ("bench_early_warning", "--minutes 10"),
    ("bench_engine_cost", "--seconds 60"),
    ("bench_loss_episode", "--runs 3"), ("bench_user_view", "--seconds 90"),
    ("bench_tunnels", "--runs 7"), ("bench_drift", "--runs 11"), ("bench_fuzz", ""),
    ("bench_faults", "--seconds 12"),
    ("bench_relay", "--runs 3"), ("bench_ui", "--rounds 3"),
    ("bench_classes", "--starts 200 --runs 30"), ("bench_class_load", "--seconds 30"),
    ("bench_aggregation", "--runs 3"), ("bench_copies", "--runs 3"),
]


def ms(v: Any, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f} ms"


def pct(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f} %"


def num(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def ran_with(doc: dict[str, Any]) -> str:
    """The options the run recorded, as its command line had them."""
    out = []
    for k, v in (doc.get("args") or {}).items():
        if v is None or v is False:
            continue
        opt = "--" + k.replace("_", "-")
        out.append(opt if v is True else f"{opt} {v:g}" if isinstance(v, float) else f"{opt} {v}")
    return " ".join(out)


def origin(doc: dict[str, Any]) -> str:
    sha = (doc.get("commit") or {}).get("sha") or "?"
    dirty = "+" if (doc.get("commit") or {}).get("dirty") else ""
    m = doc.get("machine") or {}
    load = doc.get("load") or {}
    busy = f", loaded (load {max(load.get('start', 0), load.get('end', 0)):.1f})" \
        if load.get("loaded") else ""
    return f"{sha[:7]}{dirty}, {doc.get('date', '?')[:10]}, {m.get('cpus', '?')} cores{busy}"


def switchover(f: dict[str, Any]) -> str:
    parts = []
    for scen, engines in f.items():
        b, o = engines.get("braid", {}), engines.get("baseline", {})
        n = engines.get("no-evasion")
        floor = f" (floor {ms(b['down_floor_ms'])})" if "down_floor_ms" in b else ""
        gaps = f"gap up {ms(b.get('up_gap_ms'))}, down {ms(b.get('down_gap_ms'))}{floor}, " \
            if b.get("up_gap_ms") is not None else ""
        left = f"default left its path {ms(b['left_ms'])} after it, " if "left_ms" in b else ""
        plain = (f"; without evasion gap up {ms(n.get('up_gap_ms'))}, down "
                 f"{ms(n.get('down_gap_ms'))}") if n else ""
        parts.append(
            f"{scen}: {left}declared down {ms(b.get('detection_ms'))} after it (one-way "
            f"{ms(b.get('owd_ms'))}, bound {ms(b.get('bound_ms'))}), switch "
            f"{ms(b.get('switch_ms'), 1)}, {gaps}echo gap {ms(b.get('echo_gap_ms'))}{plain}; "
            f"baseline (50 ms probes, no late allowance) {ms(o.get('detection_ms'))}, "
            f"echo gap {ms(o.get('echo_gap_ms'))}")
    return "; ".join(parts)


def false_alarms(f: dict[str, Any]) -> str:
    return "; ".join(f"{name}: {e['downs']} downs, {e['real']} real, {e['false']} false, "
                     f"{e['resets']} flows reset{evasions(e)}" for name, e in f.items())


def evasions(e: dict[str, Any]) -> str:
    """Class default's evasions, where the run counted them (runs before evasion did not)."""
    if "evasions" not in e:
        return ""
    return f", {e['evasions']} evasions ({e['evasions_for_nothing']} for nothing)"


def flaps(f: dict[str, Any]) -> str:
    out = "; ".join(f"{n}: {f[n]['moves']} moves, {f[n]['flaps']} flaps{evasions(f[n])}"
                    for n in ("braid", "baseline") if n in f)
    w = f.get("early_warning")
    if w:
        lead = w.get("median_lead_s")
        out += (f". Early warning: {w['warnings']} warnings, {w['for_nothing']} for nothing "
                f"({num(w['for_nothing_per_hour'])}/h), median lead over the plain score "
                f"{'-' if lead is None else f'{lead:.1f} s'}")
    return out


def secs(v: Any) -> str:
    return "-" if v is None else f"{v:.1f} s"


def early_warning(f: dict[str, Any]) -> str:
    b = f["braid"]
    return (f"{b['warned_episodes']} of {len(b['episodes'])} cn-us episodes warned, median lead "
            f"over the plain score {secs(b['median_lead_s'])} (over its drop held for the dwell "
            f"{secs(b['median_lead_held_s'])}); {b['warnings']} warnings, {b['for_nothing']} "
            f"for nothing ({num(b['for_nothing_per_hour'])}/h)")


def early_warning_table() -> str:
    doc = load("bench_early_warning")
    if doc is None:
        return "Not measured yet: `python3 -m benchmarks.bench_early_warning`.\n"
    b, dwell = doc["figures"]["braid"], doc["figures"].get("dwell_s")
    lines = ["| path | at | episode | warning after | score dips after | "
             f"held for the dwell ({secs(dwell)}) after |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in b["episodes"]:
        lines.append(f"| {r['path']} | {r['start_s']:.0f} s | {r['what']} | "
                     f"{secs(r['warning_after_s'])} | {secs(r['score_after_s'])} | "
                     f"{secs(r['score_held_after_s'])} |")
    return ("\n".join(lines) + f"\n\n{early_warning(doc['figures'])} "
            f"(`{ran_with(doc)}`; {origin(doc)}).\n")


def engine_cost(f: dict[str, Any]) -> str:
    parts = []
    for key in sorted(k for k in f if k.startswith("paths_")):
        b, o = f[key]["braid"], f[key]["baseline"]
        woke = b.get("engine_wakeups_per_s")  # not in files from before grid.py
        parts.append(f"{key[6:]} paths: engine thread {pct(b['engine_cpu_pct'], 2)} of a core "
                     f"at {num(b['probes_per_s'])} probes/s ({num(b['wire_kbit_s'])} kbit/s each "
                     f"way{'' if woke is None else f', {num(woke, 0)} wake-ups/s'}), baseline "
                     f"{pct(o['engine_cpu_pct'], 2)} at {num(o['probes_per_s'])} probes/s")
    floor = f.get("wake_floor")
    if floor:  # files from before the wake-up grid's floor was measured have none
        parts.append(f"an event loop woken every {num(floor['period_ms'], 0)} ms costs "
                     f"{pct(floor['bare_loop_pct'], 2)} doing nothing, "
                     f"{pct(floor['loop_with_tracker_pct'], 2)} with one probe's bookkeeping "
                     f"per wake-up ({num(floor['tracker_cold_us'])} us there, "
                     f"{num(floor['tracker_hot_us'])} us back to back)")
    return "; ".join(parts)


def loss_episode(f: dict[str, Any]) -> str:
    return (f"10 % loss each way on the active path: left after {num(f.get('left_after_s'), 2)} "
            f"s, the running stream lost {pct(f.get('loss_pct'), 2)} against "
            f"{pct(f.get('baseline_loss_pct'), 2)} on a plain tunnel through the same path")


def labs_in_order(f: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The direct path's lab first (the user without Braid), then the best gateway's: the
    files keep their keys sorted."""
    return sorted(f["labs"].items(), key=lambda kv: kv[1].get("role") != "direct path")


def user_view(f: dict[str, Any]) -> str:
    if "labs" not in f:  # a file from before the second baseline and the realtime row
        b, o = f.get("braid", {}), f.get("baseline", {})
        return (f"cn-us, baseline -> Braid: one-way delay mean {ms(o.get('delay_mean_ms'), 1)} "
                f"-> {ms(b.get('delay_mean_ms'), 1)}, p95 {ms(o.get('delay_p95_ms'), 1)} -> "
                f"{ms(b.get('delay_p95_ms'), 1)}, loss {pct(o.get('loss_pct'), 2)} -> "
                f"{pct(b.get('loss_pct'), 2)}, stutter {pct(o.get('stutter_pct'))} -> "
                f"{pct(b.get('stutter_pct'))}")
    parts = []
    for base, lab in labs_in_order(f):
        o, b, r = lab["baseline"], lab["braid"], lab["realtime"]
        death = lab.get("death") or {}
        rd = death.get("realtime") or {}
        parts.append(
            f"baseline through {base} ({lab.get('role', '?')}) -> Braid default -> Braid "
            f"realtime (copies {lab['copies']}): one-way delay mean "
            f"{ms(o.get('delay_mean_ms'), 1)} -> "
            f"{ms(b.get('delay_mean_ms'), 1)} -> {ms(r.get('delay_mean_ms'), 1)}, loss "
            f"{pct(o.get('loss_pct'), 2)} -> {pct(b.get('loss_pct'), 2)} -> "
            f"{pct(r.get('loss_pct'), 2)}, stutter {pct(o.get('stutter_pct'))} -> "
            f"{pct(b.get('stutter_pct'))} -> {pct(r.get('stutter_pct'))} (over 150 ms "
            f"{pct(o.get('over_150_pct'))} -> {pct(b.get('over_150_pct'))} -> "
            f"{pct(r.get('over_150_pct'))}), tunnels {num(lab.get('wire_up_x'), 2)}x the call"
            + (f", the copies themselves {num(lab['copies_up_x'], 2)}x"
               if lab.get("copies_up_x") is not None else "")
            + (f"; {death['path']} dies under the call: realtime lost {rd.get('lost')} of "
               f"{rd.get('sent')}" if death else ""))
    return "cn-us, shared exit; " + "; ".join(parts) + \
        " (aims: loss under 0.3 %, none through a death, copies at most 2.1x)"


def user_view_table() -> str:
    doc = load("bench_user_view")
    if doc is None or "labs" not in doc["figures"]:
        return "Not measured yet: `python3 -m benchmarks.bench_user_view`.\n"
    cols = [("delay_mean_ms", "delay mean", ms), ("delay_p95_ms", "delay p95", ms),
            ("loss_pct", "loss", pct), ("stutter_pct", "stutter (jitter buffer)", pct),
            ("over_150_pct", "frames over 150 ms", pct), ("playout_up_ms", "played at", ms)]
    lines = ["| baseline | Braid copies | stream | " + " | ".join(c[1] for c in cols)
             + " | loss / baseline's |", "| --- | --- | --- |" + " --- |" * (len(cols) + 1)]
    deaths = []
    for base, lab in labs_in_order(doc["figures"]):
        o = lab["baseline"]
        for key, what in (("baseline", f"plain tunnel through {base}"),
                          ("braid", "Braid, default class"),
                          ("realtime", "Braid, realtime class")):
            m = lab[key]
            rel = "" if key == "baseline" or not o.get("loss_pct") else \
                num(m["loss_pct"] / o["loss_pct"], 2)
            lines.append(f"| {base} | {lab['copies']} | {what} | "
                         + " | ".join(fn(m.get(k), 1) for k, _, fn in cols) + f" | {rel} |")
        d = lab.get("death")
        cost = (f"through {base}'s lab (copies {lab['copies']}): copies on for "
                f"{num(lab.get('copies_on_s'), 0)} s of {num(lab.get('call_s'), 0)} s, on "
                f"{', '.join(lab.get('copy_paths') or []) or 'no path'}; bytes on the tunnels "
                f"over the call's own {num(lab.get('wire_up_x'), 2)}x up, "
                f"{num(lab.get('wire_down_x'), 2)}x down (the idle probes and the default "
                f"stream taken out)"
                + (f", the copies themselves {num(lab['copies_up_x'], 2)}x up, "
                   f"{num(lab.get('copies_down_x'), 2)}x down (every probe taken out)"
                   if lab.get("copies_up_x") is not None else "")
                + f"; the exit removed {lab.get('exit_removed', '-')} second copies "
                f"of the call's {lab['realtime'].get('sent')} packets")
        if d:
            rt, df = d["realtime"], d["default"]
            cost += (f"; {d['path']} died {num(d.get('seconds'), 0)} s stream: realtime lost "
                     f"{rt.get('lost')} of {rt.get('sent')} (gap up {ms(rt.get('up_gap_ms'))}, "
                     f"down {ms(rt.get('down_gap_ms'))}; copies then on "
                     f"{', '.join(d.get('copies_at_death') or []) or 'no path'}), default "
                     f"class lost {df.get('lost')} (gap up {ms(df.get('up_gap_ms'))})")
        deaths.append(f"- {cost}.")
    a = doc.get("args") or {}
    return ("\n".join(lines) + "\n\n" + "\n".join(deaths)
            + f"\n\n{num(a.get('seconds'), 0)} s per lab at {a.get('pps')} packets/s, three "
            f"streams at once; one run, noisy on a shared machine ({origin(doc)}). Aims: "
            "loss under 0.3 %, none through a path's death, copies at most 2.1x.\n")


def tunnels(f: dict[str, Any]) -> str:
    return (f"apply -> three tunnels handshaken {ms(f.get('handshaken_ms'))} (one alone "
            f"{ms(f.get('single_handshaken_ms'))}); down -> all gone {ms(f.get('gone_ms'))}; a "
            f"switch through the helper {ms(f.get('switch_ms'), 1)} (with a conntrack flush "
            f"{ms(f.get('switch_flush_ms'), 1)}, rules only {ms(f.get('switch_rules_ms'), 1)})")


def relay(f: dict[str, Any]) -> str:
    return "; ".join(
        f"{rate}: {num(r.get('goodput_mbit_s'))} Mbit/s"
        + (f" ({r['of_max'] * 100:.0f} % of what TCP can carry, kernel tbf "
           f"{num(r.get('kernel_mbit_s'))})" if r.get("of_max") else "")
        for rate, r in f.items())


def aggregation(f: dict[str, Any]) -> str:
    """Medians per row: Braid's goodput over the sum of the rates, and against the best
    single path alone (the baseline in the same run)."""
    def row(scen: str, key: str) -> str:
        runs = f.get(scen, {}).get(key) or []
        if not runs:
            return "-"
        good = statistics.median(r["of_rates"] for r in runs)
        flows = statistics.median(r.get("flows_sum_of_rates") or 0.0 for r in runs)
        vs = [r["vs_best_path"] for r in runs if r.get("vs_best_path")]
        return (f"{good * 100:.0f} % (flows' sum {flows * 100:.0f} %"
                + (f", {statistics.median(vs):.2f}x best path)" if vs else ")"))
    return (f"three paths 20/20/10 Mbit/s, of the sum: 6-flow up {row('three', 'up6')}, "
            f"down {row('three', 'down6')}, one flow {row('three', 'one')}; round trips 3x "
            f"apart: up {row('pair', 'up6')}, down {row('pair', 'down6')}, one flow "
            f"{row('pair', 'one')}; one MPTCP flow " + "; ".join(
                mptcp(f, scen, what) for scen, what in (("three", "three"), ("pair", "pair"))))


def mptcp(f: dict[str, Any], scen: str, what: str) -> str:
    one = (f.get(scen) or {}).get("mptcp_one")
    if not one:
        return f"{what}: not measured"
    total = f[scen].get("sum_rates_mbit_s")
    share = f" ({one['goodput_mbit_s'] / total * 100:.0f} % of the sum)" if total else ""
    return f"{what}: {one['goodput_mbit_s']:.1f} Mbit/s{share}"


def drift(f: dict[str, Any]) -> str:
    return "what someone else deleted, back after: " + ", ".join(
        f"`{fault}` {ms(r.get('median_ms'))} (max {ms(r.get('max_ms'))}"
        + (f", {r['not_repaired']} not repaired" if r.get("not_repaired") else "") + ")"
        for fault, r in f.items())


def fuzz(f: dict[str, Any]) -> str:
    return (f"{f.get('parse_inputs')} hostile desired states through parse_state "
            f"({f.get('parse_refused')} refused with a field error, {f.get('parse_accepted')} "
            f"round-tripped, no other exception) and {f.get('protocol_requests')} hostile "
            "requests to a real helper (no internal error, refusals change nothing)")


def classes(f: dict[str, Any]) -> str:
    h, sw, n = f.get("helper") or {}, f.get("switch_ms") or {}, f.get("nft") or {}
    kinds = "; ".join(
        f"{k}: fork -> in its class {ms(f[k].get('to_class_ms'), 1)}, first sockets in it "
        f"{f[k].get('first_in_class')} of {f[k].get('first_sockets')}"
        for k in ("bash", "python") if k in f)
    marks = n.get("switch:_marks_only,_all_class_rules") or {}
    whole = n.get("all_class_rules") or {}
    alone = n.get("default_alone,_no_class_rules") or {}
    return (f"a saved rule's program, {kinds}; the helper sees the exec after "
            f"{ms(h.get('seen_ms'), 2)} and has moved it after {ms(h.get('moved_ms'), 1)} "
            f"(a cgroup move waits for an RCU grace period); a switch with every class rule "
            f"{ms(marks.get('load_ms'), 2)} in nft (whole table {ms(whole.get('load_ms'), 2)}, "
            f"without class rules {ms(alone.get('load_ms'), 2)}), apply -> reply "
            f"{ms(sw.get('classes'), 1)} (default alone {ms(sw.get('default_alone'), 1)})")


def faults(f: dict[str, Any]) -> str:
    parts = []
    for what, r in f.items():
        leaks = r.get("leaked_v4", 0) + r.get("leaked_v6", 0)
        if r.get("blocked_after_s") is not None:
            after = (f"blocked {'held' if r.get('loss_pct') == 100.0 else 'NOT held'} "
                     f"{r['blocked_after_s']:.1f} s after")
        else:
            after = f"call's longest gap {ms(r.get('max_gap_ms'))}"
        parts.append(f"{what}: {leaks} leaked, {after}")
    return "; ".join(parts)


def copies_fig(f: dict[str, Any]) -> str:
    return "a call through its path's death on cn-us: " + "; ".join(
        f"copies {mode}: the far end got {', '.join(str(g) for g in v.get('far_end_got', []))}"
        f" of {v.get('sent')} ({v.get('far_end_duplicates')} duplicates), tunnels "
        f"{'/'.join(str(c) for c in v.get('cost_x', []))}x the call"
        for mode, v in f.items())


def class_load(f: dict[str, Any]) -> str:
    def call(k: str) -> str:
        v = f.get(k) or {}
        return (f"{ms(v.get('delay_up_mean_ms'), 1)} one way "
                f"(p95 {ms(v.get('delay_up_p95_ms'), 1)}), loss {v.get('loss_pct', 0):.2f} %")

    return (f"a call next to a 6-flow upload on 20 Mbit/s paths: one class {call('one_class')}; "
            f"classes (call realtime, upload bulk) {call('classes')}; alone {call('idle')}; "
            f"delay ratio classes / one class "
            f"{f.get('delay_ratio_classes_to_one_class', float('nan')):.2f}")


def classes_table() -> str:
    doc = load("bench_classes")
    if doc is None:
        return "Not measured yet: `python3 -m benchmarks.bench_classes`.\n"
    f = doc["figures"]
    lines = ["| figure | median | p90 | worst |", "| --- | --- | --- | --- |"]
    for k in ("bash", "python"):
        if k in f:
            lines.append(f"| saved rule: launcher's fork -> {k} in its class | "
                         f"{ms(f[k].get('to_class_ms'), 1)} | {ms(f[k].get('to_class_p90_ms'), 1)}"
                         f" | {ms(f[k].get('to_class_worst_ms'), 1)} |")
    h = f.get("helper") or {}
    lines += [f"| helper: exec -> event seen | {ms(h.get('seen_ms'), 2)} | | |",
              f"| helper: exec -> process moved | {ms(h.get('moved_ms'), 1)} | "
              f"{ms(h.get('moved_p90_ms'), 1)} | |"]
    sw = f.get("switch_ms") or {}
    lines += [f"| switch, default alone: apply -> reply | {ms(sw.get('default_alone'), 1)} | | |",
              f"| switch, 3 classes + volume: apply -> reply | {ms(sw.get('classes'), 1)} | | |"]
    for name, v in (f.get("nft") or {}).items():
        listing = f" (then its listing {ms(v['listing_ms'], 2)})" if v.get("listing_ms") else ""
        lines.append(f"| nft, {name.replace('_', ' ')} | {ms(v.get('load_ms'), 2)}{listing} | | |")
    firsts = "; ".join(f"{k}: {f[k].get('first_in_class')} of {f[k].get('first_sockets')}"
                       for k in ("bash", "python") if k in f)
    return ("\n".join(lines) + f"\n\nFirst sockets in their class (counted by nft): {firsts} "
            f"({origin(doc)}).\n")


def generic(f: dict[str, Any]) -> str:
    def flat(prefix: str, v: Any) -> list[str]:
        if isinstance(v, dict):
            return [x for k, w in v.items() for x in flat(f"{prefix}{k}.", w)]
        return [f"{prefix[:-1]} {num(v, 2) if isinstance(v, float) else v}"]
    return ", ".join(flat("", f))


SUMMARY: dict[str, Callable[[dict[str, Any]], str]] = {
    "bench_switchover": switchover, "bench_false_alarms": false_alarms, "bench_flaps": flaps,
    "bench_early_warning": early_warning,
    "bench_engine_cost": engine_cost, "bench_loss_episode": loss_episode,
    "bench_user_view": user_view, "bench_tunnels": tunnels, "bench_relay": relay,
    "bench_drift": drift, "bench_fuzz": fuzz, "bench_classes": classes,
    "bench_class_load": class_load, "bench_faults": faults,
    "bench_aggregation": aggregation, "bench_copies": copies_fig,
}


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def readme_table() -> str:
    lines = ["| benchmark | figures (commit, date, machine) |", "| --- | --- |"]
    for name, args in ROWS:
        doc = load(name)
        if doc is None:
            text = "not measured yet"
        else:
            text = f"{SUMMARY.get(name, generic)(doc['figures'])} ({origin(doc)})"
            args = ran_with(doc)  # what the figures came from, not what we would run
        lines.append(f"| `{(name + ' ' + args).strip()}` | {text} |")
    return "\n".join(lines) + "\n"


def switchover_table() -> str:
    doc = load("bench_switchover")
    if doc is None:
        return "Not measured yet: `python3 -m benchmarks.bench_switchover`.\n"
    keys = [("owd_ms", "one-way"), ("bound_ms", "bound"), ("detection_ms", "detection"),
            ("left_ms", "default left"), ("switch_ms", "switch"), ("up_gap_ms", "gap up"),
            ("down_gap_ms", "gap down"), ("down_floor_ms", "floor down"),
            ("echo_gap_ms", "echo gap")]
    lines = ["| scenario | engine | " + " | ".join(k[1] for k in keys) + " |",
             "| --- | --- |" + " --- |" * len(keys)]
    for scen, engines in doc["figures"].items():
        for engine, m in engines.items():
            lines.append(f"| {scen} | {engine} | "
                         + " | ".join(ms(m.get(k)) for k, _ in keys) + " |")
    runs = next(iter(next(iter(doc["figures"].values())).values())).get("runs", "?")
    return "\n".join(lines) + f"\n\nMedians of {runs} runs ({origin(doc)}).\n"


def engine_cost_table() -> str:
    doc = load("bench_engine_cost")
    if doc is None:
        return "Not measured yet: `python3 -m benchmarks.bench_engine_cost`.\n"
    lines = ["| paths | engine | engine thread CPU | its wake-ups/s | probes/s | "
             "on the wire, each way |", "| --- | --- | --- | --- | --- | --- |"]
    for key in sorted(k for k in doc["figures"] if k.startswith("paths_")):
        for engine, m in doc["figures"][key].items():
            lines.append(f"| {key[6:]} | {engine} | {pct(m['engine_cpu_pct'], 2)} of a core | "
                         f"{num(m.get('engine_wakeups_per_s'), 0)} | "
                         f"{num(m['probes_per_s'])} | {num(m['wire_kbit_s'])} kbit/s |")
    return "\n".join(lines) + f"\n\n({origin(doc)}).\n"


def class_load_table() -> str:
    doc = load("bench_class_load")
    if doc is None:
        return "Not measured yet: `python3 -m benchmarks.bench_class_load`.\n"
    f = doc["figures"]
    lines = ["| the call | one-way mean | p95 | loss | jitter | the upload |",
             "| --- | --- | --- | --- | --- | --- |"]
    for key, what in (("idle", "alone"), ("one_class", "beside the upload, one class"),
                      ("classes", "beside the upload, realtime and bulk")):
        v = f.get(key) or {}
        up = v.get("upload_mbit_s")
        lines.append(f"| {what} | {ms(v.get('delay_up_mean_ms'), 1)} | "
                     f"{ms(v.get('delay_up_p95_ms'), 1)} | {v.get('loss_pct', 0):.2f} % | "
                     f"{ms(v.get('jitter_ms'), 1)} | "
                     f"{'-' if up is None else f'{up:.1f} Mbit/s'} |")
    return "\n".join(lines) + f"\n\n(`{ran_with(doc)}`; {origin(doc)}).\n"


def aggregation_cell(runs: dict[str, Any], key: str) -> str:
    rs = runs.get(key) or []
    if not rs:
        return ""
    vs = [r["vs_best_path"] for r in rs if r.get("vs_best_path")]
    return (f"{statistics.median(r['of_rates'] for r in rs) * 100:.0f} % / "
            f"{statistics.median(r['flows_sum_of_rates'] for r in rs) * 100:.0f} %"
            + (f" / {statistics.median(vs):.2f}x" if vs else ""))


def aggregation_table(name: str) -> Callable[[], str]:
    """One row per scenario: each transfer's goodput / flows' sum (over the sum of the
    rates) / Braid over the best path alone, medians of the run's repeats."""
    def table() -> str:
        doc = load(name)
        if doc is None:
            return "Not measured yet: `python3 -m benchmarks.bench_aggregation`.\n"
        f, scale = doc["figures"], (doc.get("args") or {}).get("scale", 1.0)
        rates = "" if scale == 1 else f" x {scale:g}"
        lines = ["| scenario | 6-flow up: goodput / flows' sum / x best | 6-flow down | "
                 "one flow | one MPTCP flow |", "| --- | --- | --- | --- | --- |"]
        for scen, label in (("three", f"three: 20/20/10 Mbit/s{rates}, 15/30/35 ms"),
                            ("pair", f"pair: 20/20 Mbit/s{rates}, 10/30 ms (round trips 3x)"),
                            ("three_with_realtime", "three, realtime steered (hk kept free)")):
            runs = f.get(scen)
            if not runs:
                continue
            one, total = runs.get("mptcp_one"), runs.get("sum_rates_mbit_s")
            mp = "" if not one or not total else (
                f"{one['goodput_mbit_s'] / total * 100:.0f} % ({one['subflows']} subflows)")
            lines.append(f"| {label} | {aggregation_cell(runs, 'up6')} | "
                         f"{aggregation_cell(runs, 'down6')} | "
                         f"{aggregation_cell(runs, 'one')} | {mp} |")
        return "\n".join(lines) + f"\n\n(`{ran_with(doc)}`; {origin(doc)}).\n"
    return table


BLOCKS: dict[str, Callable[[], str]] = {
    "bench_aggregation": aggregation_table("bench_aggregation"),
    "bench_aggregation_scaled": aggregation_table("bench_aggregation_scaled"),
    "readme-table": readme_table, "bench_switchover": switchover_table,
    "bench_engine_cost": engine_cost_table, "bench_classes": classes_table,
    "bench_early_warning": early_warning_table,
    "bench_class_load": class_load_table,
    "bench_user_view": user_view_table,
}


def render(text: str, where: Path) -> str:
    def fill(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in BLOCKS:
            raise SystemExit(f"{where}: unknown figures block {name!r} (known: "
                             f"{', '.join(BLOCKS)})")
        return m.group(1) + BLOCKS[name]() + m.group(4)

    return BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = ap.parse_args(argv)
    stale = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        new = render(text, path)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    for path in stale:
        print(f"{'stale' if args.check else 'updated'}: {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
