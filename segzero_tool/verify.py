"""The self-check loop (off by default): a verifier model looks at the masks and keeps, drops or retries.

After the masks, a verifier (any :class:`~segzero_tool.reasoners.base.Reasoner`: the reasoner itself,
a larger VLM over the OpenAI-compatible backend, or a user class) gets one request: the
:func:`~segzero_tool.inspect_view.render_inspection` picture and :data:`VERIFIER_PROMPT` filled with the
query and the number of objects. Its answer is read by :func:`parse_verdict`:

* ``{"keep": [0, 2]}``: the result keeps those objects (renumbered from 0 in the new result);
* ``{"keep": []}``: no object answers the query: an empty result, said so in its ``parse_issues``;
* ``{"retry": "hint"}``: ``rerun(hint)`` is called (the pipeline re-runs the reasoner with the query
  and the hint) and its result is verified in the next round, up to ``max_rounds`` (default 2, so one
  retry); a retry asked for in the last round leaves the last result as it is, with a note;
* anything else (``unparsed``): every object is kept and the problem is recorded.

:func:`run_verification` never raises for the verifier's sake: an exception in ``generate`` (or in
``rerun``) is recorded and the result is returned unverified. Everything is recorded in
``result.verification`` (see :func:`run_verification`).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import numbers
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .inspect_view import render_inspection
from .prompts import DEFAULT_MAX_QUERY_CHARS
from .reasoners.base import ReasonerRequest
from .steer import select_objects

if TYPE_CHECKING:
    from .inspect_view import Inspection
    from .reasoners.base import Reasoner
    from .result import SegmentationResult

#: Default and largest number of verifier rounds of the self-check loop (``verify=True``).
DEFAULT_VERIFY_ROUNDS = 2
MAX_VERIFY_ROUNDS = 5
#: How the self-check loop's retry asks the reasoner again: the user's query and the verifier's hint.
RETRY_QUERY = "{query} (hint: {hint})"


def retry_query(query: str, hint: str, max_chars: int = DEFAULT_MAX_QUERY_CHARS) -> str:
    """The query of a retry (:data:`RETRY_QUERY`): ``"<query> (hint: <hint>)"``; the hint is cut so that
    the whole stays within ``max_chars`` (the query itself is never cut; an empty hint gives the query)."""
    hint = " ".join(str(hint).split())
    if not hint:
        return query
    room = max_chars - len(RETRY_QUERY.format(query=query, hint=""))
    if room <= 1:
        return query
    if len(hint) > room:
        hint = hint[: room - 1].rstrip() + "…"
    return RETRY_QUERY.format(query=query, hint=hint)


def check_verify_rounds(rounds: int) -> int:
    """``rounds`` as an int in ``1..MAX_VERIFY_ROUNDS``, else ``ValueError``."""
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or not 1 <= rounds <= MAX_VERIFY_ROUNDS:
        raise ValueError(f"verify_rounds must be an integer from 1 to {MAX_VERIFY_ROUNDS}, got {rounds!r}")
    return int(rounds)


#: The verifier's prompt. ``{query}``, ``{n_objects}`` and ``{last_index}`` are filled in by
#: :func:`build_verifier_prompt` (in one pass: braces in the query are left as they are).
VERIFIER_PROMPT = """\
You are checking the result of an image segmentation. The request was:
"{query}"

The picture shows the image with {n_objects} candidate object(s), numbered 0 to {last_index}. Each \
object's mask is outlined and lightly filled in its own colour, and its number is written on a label of \
the same colour. An object without a mask shows its box instead.

Decide which numbered objects answer the request. An object answers it when its mask covers the \
thing the request asks for. A mask on the wrong thing does not, nor one that covers only a small part \
of the right thing, nor one that spills far over other things.

Think briefly inside <think> </think>, then give one answer inside <answer> </answer>, as JSON, in one \
of these forms:
<answer>{"keep": [0, 2]}</answer> lists the numbers of the objects that answer the request (all of \
them if all do).
<answer>{"keep": []}</answer> says that no object answers the request.
<answer>{"retry": "hint"}</answer> says that no object answers the request but another attempt could \
find it; the hint says in a few words what the right object is and where it is in the image.
"""

_PLACEHOLDER = re.compile(r"\{(query|n_objects|last_index)\}")

#: The verifier's text is kept in the record up to this many characters.
TEXT_RECORD_CHARS = 4000
#: Only this many characters of the verifier's text are read (its end: the answer comes last).
_READ_CHARS = 100_000
#: A JSON candidate longer than this is not decoded.
_CANDIDATE_CHARS = 20_000
#: Token budget of the verifier's request.
DEFAULT_VERIFY_TOKENS = 1024

VerdictKind = Literal["keep", "none", "retry", "unparsed"]


def build_verifier_prompt(query: str, n_objects: int) -> str:
    """:data:`VERIFIER_PROMPT` for ``query`` and ``n_objects`` objects."""
    values = {"query": str(query), "n_objects": str(int(n_objects)), "last_index": str(max(0, int(n_objects) - 1))}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], VERIFIER_PROMPT)


@dataclass(frozen=True)
class Verdict:
    """The verifier's answer, read.

    Attributes:
        kind: ``keep`` (``keep`` holds the objects to keep, at least one), ``none`` (no object answers
            the query), ``retry`` (``hint`` says what to look for), ``unparsed`` (no usable answer:
            every object is kept).
        keep: indices of the objects to keep, ascending, each in ``range(n_objects)``.
        hint: the retry's hint.
        issues: what was wrong or repaired in the answer.
    """

    kind: VerdictKind
    keep: tuple[int, ...] = ()
    hint: str | None = None
    issues: tuple[str, ...] = ()


# --- reading the answer ------------------------------------------------------------------------------


def _answer_text(text: str) -> tuple[str, list[str]]:
    """The last ``<answer>`` block after the thinking (or, without tags, the text after ``</think>``)."""
    issues: list[str] = []
    end_think = text.rfind("</think>")
    rest = text[end_think + len("</think>"):] if end_think >= 0 else text
    start = rest.rfind("<answer>")
    if start < 0:
        if "<think>" in rest and end_think < 0:
            issues.append("the thinking was not closed")
        issues.append("no <answer> block: read the text itself")
        return rest, issues
    inner = rest[start + len("<answer>"):]
    close = inner.find("</answer>")
    if close < 0:
        issues.append("the <answer> block was not closed")
        return inner, issues
    return inner[:close], issues


def _candidates(answer: str) -> list[str]:
    """JSON-looking spans of ``answer``: a fenced block's content, then each ``{...}`` / ``[...]`` span."""
    out = []
    fence = re.search(r"```[a-zA-Z0-9_-]*\s*(.*?)(?:```|\Z)", answer, re.DOTALL)
    if fence:
        out.append(fence.group(1).strip())
    for opener, closer in (("{", "}"), ("[", "]")):
        i = answer.find(opener)
        j = answer.rfind(closer)
        if 0 <= i < j:
            out.append(answer[i : j + 1])
    stripped = answer.strip()
    if stripped:
        out.append(stripped)
    return [c for c in out if len(c) <= _CANDIDATE_CHARS]


def _decode(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(candidate)  # single quotes, True/False, trailing commas
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*#?\s*(-?\d{1,9})\s*", value)
        return int(m.group(1)) if m else None
    return None


def _keep(values: Any, n_objects: int, issues: list[str]) -> Verdict:
    if isinstance(values, (int, float, str)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, (list, tuple)):
        return Verdict("unparsed", issues=(*issues, f"'keep' is not a list: {str(values)[:80]!r}; every object kept"))
    kept: set[int] = set()
    for v in values:
        i = _index(v)
        if i is None:
            issues.append(f"ignored a 'keep' entry that is not an object number: {str(v)[:40]!r}")
        elif not 0 <= i < n_objects:
            issues.append(f"ignored object number {i}: out of range (the objects are #0 to #{n_objects - 1})"
                          if n_objects else f"ignored object number {i}: there is no object")
        else:
            kept.add(i)
    if kept:
        return Verdict("keep", tuple(sorted(kept)), issues=tuple(issues))
    if values:
        return Verdict("unparsed", issues=(*issues, "no valid object number in 'keep'; every object kept"))
    return Verdict("none", issues=tuple(issues))


def _from_value(value: Any, n_objects: int, issues: list[str]) -> Verdict | None:
    if isinstance(value, list):
        issues.append("a bare list was read as 'keep'")
        return _keep(value, n_objects, issues)
    if not isinstance(value, dict):
        return None
    keys = {str(k).strip().lower(): v for k, v in value.items()}
    if "keep" in keys:
        verdict = _keep(keys["keep"], n_objects, issues)
        if "retry" in keys and verdict.kind in ("keep", "unparsed"):
            return dataclasses.replace(verdict, issues=(*verdict.issues, "ignored 'retry' given with 'keep'"))
        if "retry" in keys and verdict.kind == "none":
            return _retry(keys["retry"], issues)
        return verdict
    if "retry" in keys:
        return _retry(keys["retry"], issues)
    if keys.get("none") is True:
        return Verdict("none", issues=tuple(issues))
    return None


def _retry(hint: Any, issues: list[str]) -> Verdict:
    text = " ".join(str(hint).split()) if hint is not None and not isinstance(hint, (dict, list)) else ""
    if not text:
        return Verdict("none", issues=(*issues, "a retry without a hint was read as: no object answers the request"))
    if len(text) > 500:
        issues.append("the hint was cut to 500 characters")
        text = text[:499].rstrip() + "…"
    return Verdict("retry", hint=text, issues=tuple(issues))


def parse_verdict(text: Any, n_objects: int) -> Verdict:
    """Read the verifier's answer; total: any input gives a :class:`Verdict`, never an exception.

    The answer is the last ``<answer>`` block after the ``<think>`` block (or the text itself without
    tags); inside it, JSON (fenced or not, Python-style quotes tolerated), one of ``{"keep": [...]}``,
    ``{"retry": "hint"}``, or a bare list read as ``keep``. Numbers out of ``range(n_objects)`` or not
    numbers are dropped with an issue; if none of the listed numbers is valid the verdict is
    ``unparsed`` (every object kept), so a verifier that misnumbers never empties a result. An empty
    ``keep`` is ``none``; a retry with an empty hint is ``none`` too. Anything else is ``unparsed``.
    """
    try:
        n = max(0, int(n_objects))
        if not isinstance(text, str):
            return Verdict("unparsed", issues=(f"the verifier's answer is not text ({type(text).__name__})",))
        if len(text) > _READ_CHARS:
            text = text[-_READ_CHARS:]
        answer, issues = _answer_text(text)
        for candidate in _candidates(answer):
            value = _decode(candidate)
            verdict = _from_value(value, n, list(issues))
            if verdict is not None:
                return verdict
        m = re.search(r"""["']?keep["']?\s*[:=]\s*\[([^\]]{0,2000})\]""", answer)
        if m:
            parts = [p for p in re.split(r"[,\s]+", m.group(1)) if p]
            return _keep(parts, n, [*issues, "the answer was not valid JSON; read its 'keep' list"])
        shown = " ".join(answer.split())[:120]
        return Verdict("unparsed", issues=(*issues, f"no keep/retry answer found in {shown!r}; every object kept"))
    except Exception as exc:  # noqa: BLE001 - total by contract
        return Verdict("unparsed", issues=(f"the answer could not be read ({type(exc).__name__}); every object kept",))


# --- the loop ----------------------------------------------------------------------------------------


def _clip_text(text: str, limit: int = TEXT_RECORD_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


def run_verification(
    result: SegmentationResult,
    *,
    verifier: Reasoner,
    query: str | None = None,
    rerun: Callable[[str], SegmentationResult] | None = None,
    max_rounds: int = 2,
    render: Callable[..., Inspection] = render_inspection,
    crops: bool = True,
    max_side: int = 1024,
    max_new_tokens: int = DEFAULT_VERIFY_TOKENS,
) -> SegmentationResult:
    """Verify ``result`` with ``verifier``; returns a new result (``result`` itself is not changed).

    Args:
        result: the pipeline's result (its ``image`` is what the verifier sees; without one, a grey image).
        verifier: any reasoner; it gets one :class:`ReasonerRequest` per round: the inspection picture
            and :func:`build_verifier_prompt`'s text.
        query: the user's query (``None``: ``result.query``).
        rerun: ``rerun(hint)`` returns a new result for the query with the hint (the pipeline re-runs the
            reasoner); ``None``: a retry verdict is not followed.
        max_rounds: at most this many verifier calls (at least 1).
        render: draws the picture (``render(result, crops=..., max_side=...)``), for tests and custom views.
        crops: the picture has one crop per object.
        max_side: the picture's longest side.
        max_new_tokens: the verifier's token budget.

    Returns:
        the kept objects' result (``keep``), an empty one (``none``), the last result (``unparsed``,
        rounds exhausted, an error), each with ``verification`` set:

        ``{"status": "kept" | "none" | "unparsed" | "exhausted" | "error" | "no_objects",
        "verifier": model id, "max_rounds": int, "rounds": [{"round", "objects", "verdict", "kept",
        "hint", "issues", "text", "error"?, "timings_ms": {"render", "verify", "rerun"?}}, ...],
        "kept": indices kept of the last verified result or None, "note": str, "timings_ms": {"total"}}``;
        ``timings["verify"]`` holds the total too. A sentence starting with ``verification`` is added to
        ``parse_issues`` whenever objects were dropped, none was kept, or the check did not conclude.
    """
    t_all = time.perf_counter()
    rounds_max = max(1, int(max_rounds))
    q = result.query if query is None else query
    current = result
    rounds: list[dict[str, Any]] = []
    record: dict[str, Any] = {
        "status": "error", "verifier": getattr(verifier, "model_id", None) or getattr(verifier, "name", None),
        "max_rounds": rounds_max, "rounds": rounds, "kept": None, "note": "",
    }
    final = current
    issue: str | None = None
    for rnd in range(1, rounds_max + 1):
        n = len(current.objects)
        entry: dict[str, Any] = {"round": rnd, "objects": n, "verdict": None, "kept": None, "hint": None,
                                 "issues": [], "text": None, "timings_ms": {}}
        if n == 0:
            entry["verdict"] = "skipped"
            rounds.append(entry)
            record["status"] = "no_objects"
            record["note"] = ("the result has no object: nothing to verify" if rnd == 1 else
                              "the retry found no object: nothing to verify")
            issue = None if rnd == 1 else "verification: the retry found no object"
            final = current
            break
        rounds.append(entry)
        t0 = time.perf_counter()
        try:
            picture = render(current, crops=crops, max_side=max_side)
            prompt = build_verifier_prompt(q, n)
            entry["timings_ms"]["render"] = _ms(t0)
            t0 = time.perf_counter()
            outputs = verifier.generate([ReasonerRequest(image=picture.image, prompt=prompt,  # a verdict, not
                                                         max_new_tokens=max_new_tokens, structured=False)])  # an answer
            text = outputs[0].text
            if not isinstance(text, str):
                raise TypeError(f"the verifier returned {type(text).__name__}, not text")
        except Exception as exc:  # noqa: BLE001 - the verifier never breaks the result
            entry["timings_ms"]["verify"] = _ms(t0)
            entry["error"] = _clip_text(f"{type(exc).__name__}: {exc}", 500)
            record["status"] = "error"
            record["note"] = "the verifier failed; the result is returned unverified"
            issue = f"verification failed ({_clip_text(type(exc).__name__ + ': ' + str(exc), 200)}); the result is unverified"
            final = current
            break
        entry["timings_ms"]["verify"] = _ms(t0)
        entry["text"] = _clip_text(text)
        verdict = parse_verdict(text, n)
        entry["verdict"] = verdict.kind
        entry["issues"] = list(verdict.issues)
        if verdict.kind == "keep":
            entry["kept"] = list(verdict.keep)
            record.update(status="kept", kept=list(verdict.keep))
            dropped = [i for i in range(n) if i not in verdict.keep]
            record["note"] = (f"the verifier kept all {n} object(s)" if not dropped else
                              f"the verifier kept {_nums(verdict.keep)} and dropped {_nums(dropped)}")
            if dropped:
                issue = (f"verification: the verifier kept {_nums(verdict.keep)} of {n} object(s) and dropped "
                         f"{_nums(dropped)}; the kept objects are renumbered from #0")
            final = select_objects(current, list(verdict.keep))
            break
        if verdict.kind == "none":
            entry["kept"] = []
            record.update(status="none", kept=[])
            record["note"] = f"the verifier judged that none of the {n} object(s) answers the query"
            issue = f"verification: the verifier judged that none of the {n} object(s) answers the query; they were dropped"
            final = select_objects(current, [])
            break
        if verdict.kind == "unparsed":
            record.update(status="unparsed", kept=list(range(n)))
            record["note"] = "the verifier's answer could not be read; every object is kept"
            issue = "verification: the verifier's answer could not be read; every object is kept, unverified"
            final = current
            break
        entry["hint"] = verdict.hint
        if rnd == rounds_max or rerun is None:
            record.update(status="exhausted", kept=None)
            why = (f"the verifier asked for a retry after the last of {rounds_max} round(s)" if rerun is not None
                   else "the verifier asked for a retry, which is not available here")
            record["note"] = f"{why}; the last result is returned unverified (hint: {verdict.hint})"
            issue = f"verification: {why}; this result is unverified (the verifier's hint: {verdict.hint})"
            final = current
            break
        t0 = time.perf_counter()
        try:
            current = rerun(verdict.hint or "")
        except Exception as exc:  # noqa: BLE001
            entry["timings_ms"]["rerun"] = _ms(t0)
            entry["error"] = _clip_text(f"rerun failed: {type(exc).__name__}: {exc}", 500)
            record.update(status="error", note="the retry failed; the previous result is returned unverified")
            issue = f"verification: the retry failed ({_clip_text(type(exc).__name__ + ': ' + str(exc), 200)}); the result is unverified"
            final = current
            break
        entry["timings_ms"]["rerun"] = _ms(t0)
        final = current
    total = _ms(t_all)
    record["timings_ms"] = {"total": total}
    out = dataclasses.replace(final, timings={**final.timings, "verify": total})
    if issue:
        out.parse_issues = (*out.parse_issues, issue)
    out.verification = record
    return out


def _nums(indices: Sequence[int]) -> str:
    return ", ".join(f"#{i}" for i in indices) if indices else "none"


__all__ = ["DEFAULT_VERIFY_ROUNDS", "DEFAULT_VERIFY_TOKENS", "MAX_VERIFY_ROUNDS", "RETRY_QUERY", "VERIFIER_PROMPT",
           "Verdict", "build_verifier_prompt", "check_verify_rounds", "parse_verdict", "retry_query",
           "run_verification"]
