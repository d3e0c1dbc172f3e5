"""``--llm-report=PATH.html``: one self-contained page of a session's LLM calls (no script, no network, no CDN).

Everything shown is escaped: prompts and answers are model output and user input, never markup.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1d2330; background: #fafbfc; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 0; font-family: ui-monospace, monospace; }
.summary { color: #4a5263; margin-bottom: 18px; } .summary p { margin: 2px 0; }
section.test { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; margin: 0 0 14px; padding: 10px 14px; }
.outcome { font-weight: 600; margin-left: 8px; } .passed { color: #1a7f37; } .failed { color: #cf222e; } .skipped { color: #9a6700; }
.call { border-top: 1px solid #eef0f3; padding: 8px 0; } .meta { color: #4a5263; font-size: 13px; }
.tag { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600; margin-right: 6px; }
.replayed { background: #ddf4e4; color: #1a7f37; } .recorded { background: #dbeafe; color: #1e4fa3; }
.adopted { background: #f1e4ff; color: #6e35b0; } .missed { background: #ffe1e1; color: #cf222e; } .drift { background: #fff1c2; color: #7a5200; }
.msg { margin: 4px 0; } .role { font-weight: 600; color: #4a5263; margin-right: 6px; }
pre { white-space: pre-wrap; word-break: break-word; background: #f4f6f8; border-radius: 4px; padding: 6px 8px; margin: 4px 0; font-size: 12.5px; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; } .sides h3 { font-size: 13px; margin: 4px 0; }
"""


def write_report(path: Path, tests: Sequence[Mapping[str, Any]], outcomes: Mapping[str, str], summary: Iterable[str]) -> None:
    """Write the page for these test records (``report_data.test_record``) and the session's summary lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(tests, outcomes, summary), encoding="utf-8")


def render(tests: Sequence[Mapping[str, Any]], outcomes: Mapping[str, str], summary: Iterable[str]) -> str:
    """The whole page as text."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>llm_replay report</title>',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>llm_replay report</h1>",
        '<div class="summary">' + "".join(f"<p>{escape(line)}</p>" for line in summary) + "</div>",
    ]
    if not tests:
        parts.append("<p>No test used llm_cache in this session.</p>")
    for test in sorted(tests, key=lambda record: (outcomes.get(record["test"]) != "failed", record["test"])):  # failures first
        parts.append(_test(test, outcomes.get(test["test"], "")))
    parts.append("</body></html>")
    return "\n".join(parts)


def _test(test: Mapping[str, Any], outcome: str) -> str:
    counts = ", ".join(f"{sum(call['how'] == how for call in test['calls'])} {how}" for how in ("replayed", "adopted", "recorded") if any(call["how"] == how for call in test["calls"]))
    if test["misses"]:
        counts = ", ".join(filter(None, [counts, f"{len(test['misses'])} missed"]))
    head = (
        f'<section class="test"><h2>{escape(test["test"])}<span class="outcome {escape(outcome)}">{escape(outcome)}</span></h2>'
        f'<div class="meta">mode {escape(test["mode"])} · {escape(counts or "no LLM calls")}</div>'
    )
    body = [_call(call) for call in test["calls"]]
    body += [f'<div class="call"><span class="tag missed">missed</span><pre>{escape(miss)}</pre></div>' for miss in test["misses"]]
    body += [_drift(drift) for drift in test["drift"]]
    return head + "".join(body) + "</section>"


def _call(call: Mapping[str, Any]) -> str:
    tokens = "tokens unknown" if call["input_tokens"] is None and call["output_tokens"] is None else f"{call['input_tokens'] or 0} in / {call['output_tokens'] or 0} out tokens"
    latency = f"{call['latency_ms']:,.0f} ms" if call["latency_ms"] is not None else "latency unknown"
    return (
        f'<div class="call"><span class="tag {escape(call["how"])}">{escape(call["how"])}</span>'
        f'<span class="meta">{escape(call["endpoint"])} · model {escape(call["model"] or "-")} · {tokens} · {latency} · key {escape(call["key"])}</span>'
        + "".join(f'<div class="msg"><span class="role">{escape(role)}</span>{_pre(text)}</div>' for role, text in call["messages"])
        + f'<div class="msg"><span class="role">answer</span>{_answer(call["answer"])}</div></div>'
    )


def _drift(drift: Mapping[str, Any]) -> str:
    """A compared answer: the recorded one beside the new (refresh) or live (verify) one; one line if identical."""
    by = drift["by"]
    head = (
        f'<div class="call"><span class="tag drift">{escape(by)} drift: {escape(", ".join(drift["classes"]))}</span>'
        f'<span class="meta">{escape(drift["endpoint"])} · model {escape(drift["model"] or "-")}</span>'
    )
    if drift["classes"] == ["identical"]:
        return head + '<div class="meta">the new answer says what the recorded one said</div></div>'
    old_title, new_title = ("recorded before", "recorded now") if by == "refresh" else ("recorded", "live now (not recorded)")
    new = _answer(drift["new"]) if drift["new"] is not None else _pre("(could not be sent live)")
    return head + f'<div class="sides"><div><h3>{old_title}</h3>{_answer(drift["old"])}</div><div><h3>{new_title}</h3>{new}</div></div></div>'



def _answer(answer: Mapping[str, Any]) -> str:
    lines = []
    if answer["text"]:
        lines.append(answer["text"])
    lines += [f"tool call {call['name']}({json.dumps(call['arguments'], ensure_ascii=False, sort_keys=True)})" for call in answer["tool_calls"]]
    facts = [f"status {answer['status']}"] + ([f"finish reason {answer['finish_reason']}"] if answer["finish_reason"] else [])
    return _pre("\n".join(lines) or "(no text)") + f'<div class="meta">{escape(" · ".join(facts))}</div>'


def _pre(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"
