"""The robotics planner as a LangGraph ``StateGraph``.

::

    START → understand_task → perceive → geometry → plan → check ─ok──→ approve ─approved─→ execute → END
                                 ↑                    ↑         └─failed→ resolve   └─rejected─→ END
                                 └──── re-query ──────┴── choice ──────────┘ └─abort─→ END

* ``resolve`` re-queries automatically (a refined description; bounded by ``max_attempts``), refines
  once a mask that disagrees with the reasoner's box (the reasoner's point as a click, with
  ``refine_object`` of the pipeline), and otherwise asks the human with ``interrupt({"type": "question", ...})``;
* ``approve`` always asks with ``interrupt({"type": "approval", "plan": [...]})`` before anything
  runs (unless ``require_approval=False``);
* resume either with ``graph.invoke(Command(resume=...), config)`` on the same ``thread_id``;
* with ``frames`` (a video path, a folder of frames, or a live source in ``config["configurable"]["frames"]``)
  instead of ``image``, ``perceive`` segments the newest frame and ``observe`` (after the approval, before
  ``execute``) tracks the objects over new frames, re-queries a lost target and re-plans on the newest frame
  (see :mod:`.tracking`); ``targets`` reports each target's latest geometry::

    approve ─approved─→ observe ─checks pass─→ execute → END
                           └─a check fails (e.g. the target is lost)─→ resolve
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .perception import (
    as_depth,
    as_segment_fn,
    measure,
    object_record,
    perceive_query,
    resolve_image,
    to_intrinsics,
)
from .planning import build_plan, check_plan, select
from .state import PlannerInput, PlannerState, TaskSpec
from .task import parse_task_llm, parse_task_rules, refine_query_llm, refine_query_rules
from .tracking import VideoRegistry, frame_source, perceive_frames, refresh_objects, thread_id

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import BaseCheckpointSaver

logger = logging.getLogger(__name__)

#: ``executor(step, state) -> outcome``; the outcome (str or JSON-ready dict) is recorded per step.
Executor = Callable[[dict[str, Any], dict[str, Any]], Any]

DRY_RUN = "executed (dry run)"

_APPROVAL_SCHEMA = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "feedback": {"type": "string"}},
    "required": ["approved"],
}
_ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "choice": {"type": "integer", "description": "index of the candidate to use"},
        "query": {"type": "string", "description": "a better description to search for"},
        "proceed": {"type": "boolean", "description": "ignore this failed check"},
        "abort": {"type": "boolean"},
    },
}


def _answer(value: Any) -> dict[str, Any]:
    """Normalise a human answer: ``{"choice": i}``, ``{"query": s}``, ``{"proceed": True}`` or
    ``{"abort": True}``; bare ints, digit strings, yes/no words and other strings are accepted."""
    if isinstance(value, dict):
        return value
    if value is None or value is False:
        return {"abort": True}
    if value is True:
        return {"proceed": True}
    if isinstance(value, int):
        return {"choice": value}
    s = str(value).strip()
    if s.lstrip("#").isdigit():
        return {"choice": int(s.lstrip("#"))}
    if s.lower() in ("", "abort", "stop", "cancel", "no", "n", "quit"):
        return {"abort": True}
    if s.lower() in ("yes", "y", "ok", "proceed", "go", "go ahead"):
        return {"proceed": True}
    return {"query": s}


def _approval(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {"approved": bool(value.get("approved")), "feedback": str(value.get("feedback") or "")}
    if isinstance(value, str):
        ok = value.strip().lower() in ("y", "yes", "ok", "approve", "approved", "go", "go ahead", "true")
        return {"approved": ok, "feedback": "" if ok else value.strip()}
    return {"approved": bool(value), "feedback": ""}


def _describe(obj: dict[str, Any]) -> str:
    g = obj["geometry"]
    text = f"#{obj['index']} grasp={g['grasp_point']}"
    if g.get("orientation_deg") is not None:
        text += f" orientation={g['orientation_deg']:.1f}deg"
    if g.get("point_3d") is not None:
        text += " xyz=(" + ", ".join(f"{v:.3f}" for v in g["point_3d"]) + ") m"
    return text


def _candidates(perception: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"index": o["index"], "box": o.get("box"), "area": o.get("geometry", {}).get("area", o.get("area")),
             "score": o.get("score"), "grasp_point": o.get("geometry", {}).get("grasp_point")}
            for o in perception.get("objects", [])]


def build_planner_graph(
    segmenter: Any,
    *,
    model: BaseChatModel | None = None,
    checkpointer: BaseCheckpointSaver | None = None,
    executor: Executor | None = None,
    max_attempts: int = 2,
    max_depth_m: float | None = None,
    depth_scale: float = 1.0,
    place_margin_px: int = 10,
    require_approval: bool = True,
    name: str = "robot_planner",
    tracker: Any = None,
    observe_frames: int | None = 1,
    requery_every: int = 10,
    key_frames: str = "first",
) -> Any:
    """Compile the planner graph.

    Args:
        segmenter: a :class:`~segzero_tool.SegZeroPipeline` (its ``segment(image, query)`` is used)
            or any callable ``(image, query) -> SegmentationResult``.
        model: chat model that parses the task (structured output) and refines queries; ``None``
            uses the deterministic rule-based parser and rephrasings.
        checkpointer: e.g. ``InMemorySaver()``; required for the interrupts to pause and resume
            (``langgraph dev`` supplies its own).
        executor: ``executor(step, state) -> outcome`` called per approved step; default: a dry run
            that records ``"executed (dry run)"``.
        max_attempts: automatic re-queries per role before asking the human.
        max_depth_m: with a depth map, steps farther than this are unreachable (``None``: no limit).
        depth_scale: metres per depth unit when the state gives none (0.001 for millimetre maps).
        place_margin_px: gap between a placed object and its reference, pixels.
        require_approval: ask the human before executing (the default).
        name: the graph's name.
        tracker: with ``frames``: ``None`` (the video model of the pipeline's segmenter), a tracker model id
            or folder, or a callable returning a new ``VideoTracker`` (one per role).
        observe_frames: new frames ``observe`` tracks before executing (``None``: until the source ends).
        requery_every: while a followed target stays lost, ask the reasoner again every this many frames
            (the first time on the frame after the loss).
        key_frames: the sessions' key-frame policy (``first``, ``every:N``, ``every:Ns``).

    Returns:
        The compiled graph (``invoke``/``stream`` with ``{"task": ..., "image": ...}`` and
        ``{"configurable": {"thread_id": ...}}``).
    """
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt

    if max_attempts < 0:
        raise ValueError(f"max_attempts must be >= 0, got {max_attempts}")
    if max_depth_m is not None and not max_depth_m > 0:
        raise ValueError(f"max_depth_m must be positive, got {max_depth_m}")
    if observe_frames is not None and observe_frames < 0:
        raise ValueError(f"observe_frames must be >= 0 or None, got {observe_frames}")
    # the live frame sources and tracking sessions, per thread_id (memory only: the state stays JSON)
    videos = VideoRegistry(segmenter, tracker=tracker, key_frames=key_frames, requery_every=requery_every)
    segment = as_segment_fn(segmenter)
    # the last full result per (role, query), for refine_object (memory only: the state stays JSON)
    live: dict[tuple[str, str], Any] = {}

    def understand_task(state: PlannerState, config: RunnableConfig) -> dict[str, Any]:
        task = (state.get("task") or "").strip()
        if not task:
            raise ValueError("the planner needs a 'task', e.g. 'put the cup next to the sink'")
        frames = frame_source(state, config)
        if state.get("image") is None and frames is None:
            raise ValueError("the planner needs an 'image' (a path or an (H, W, 3) uint8 array) or 'frames' "
                             "(a video path, a folder of frames, or a camera in config['configurable']['frames'])")
        if state.get("image") is not None and frames is not None:
            raise ValueError("give the planner either an 'image' or 'frames', not both (on a thread that ran with "
                             "the other one, pass it as None)")
        video = {}
        if frames is not None:
            video = {"video": videos.start(thread_id(config), frames).state(), "targets": {}}
        elif state.get("video") is not None:  # this thread ran on frames before
            videos.close(thread_id(config))
            video = {"video": None, "targets": {}}
        how = "rules"
        if model is not None:
            try:
                spec, how = parse_task_llm(task, model), "the chat model"
            except ValueError as exc:
                logger.warning("the chat model could not parse the task (%s); using the rules", exc)
                spec, how = parse_task_rules(task), f"rules (the model's answer was invalid: {exc})"
        else:
            spec = parse_task_rules(task)
        queries = spec.roles()
        return {
            "spec": spec.model_dump(), "queries": queries, "objects": {}, "choices": {}, "overrides": [],
            "attempts": {}, "plan": [], "checks": [], "issues": [], "approval": {}, "results": [],
            "status": "planning", **video,
            "log": [f"understand_task: {spec.action} " + ", ".join(f"{r}={q!r}" for r, q in queries.items())
                    + (f", relation={spec.relation}" if spec.relation else "") + f" (parsed by {how})"],
        }

    def perceive(state: PlannerState, config: RunnableConfig) -> dict[str, Any]:
        if state.get("video") is not None:  # the newest frame (see .tracking)
            return perceive_frames(videos.get(thread_id(config), frame_source(state, config), state["video"]), state)
        objects = dict(state.get("objects") or {})
        log = []
        image = None
        for role, query in state["queries"].items():
            old = objects.get(role)
            if old is not None and old.get("query") == query:
                continue
            image = resolve_image(state["image"]) if image is None else image
            p = perceive_query(segment, image, query, keep=lambda r, k=(role, query): live.__setitem__(k, r))
            p["tried"] = [*(old or {}).get("tried", []), query]
            objects[role] = p
            log.append(f"perceive {role}: {query!r} -> {p['summary']}")
        return {"objects": objects, "log": log}

    def geometry(state: PlannerState) -> dict[str, Any]:
        objects = dict(state["objects"])
        size = next(iter(objects.values()))["image_size"]
        depth = as_depth(state.get("depth"), size)
        intr = to_intrinsics(state.get("intrinsics"))
        scale = float(state.get("depth_scale") or depth_scale)
        log = []
        for role, p in objects.items():
            if p["objects"] and any("geometry" not in o for o in p["objects"]):
                objects[role] = measure(p, depth=depth, intrinsics=intr, depth_scale=scale)
                log.append(f"geometry {role}: " + "; ".join(_describe(o) for o in objects[role]["objects"]))
        return {"objects": objects, "log": log}

    def plan(state: PlannerState, config: RunnableConfig) -> dict[str, Any]:
        objects = state["objects"]
        size = next(iter(objects.values()))["image_size"]
        steps = build_plan(state["spec"], objects, state.get("choices") or {},
                           depth=as_depth(state.get("depth"), size), intrinsics=to_intrinsics(state.get("intrinsics")),
                           depth_scale=float(state.get("depth_scale") or depth_scale), margin=place_margin_px)
        update = {"plan": steps, "log": [f"plan: {s['step']}. {s['description']}" for s in steps] or ["plan: no steps"]}
        video = videos.peek(thread_id(config)) if state.get("video") is not None else None
        if video is not None and video.roles:  # follow the objects the plan acts on
            update["targets"] = video.follow_selected(objects, state.get("choices") or {})
        return update

    def check(state: PlannerState) -> dict[str, Any]:
        checks = check_plan(state["spec"], state["objects"], state["plan"], state.get("choices") or {},
                            state.get("overrides") or [], has_depth=state.get("depth") is not None,
                            max_depth_m=max_depth_m)
        issues = [f"{c['role']} {c['check']}: {c['detail']}" for c in checks if not c["ok"]]
        return {"checks": checks, "issues": issues,
                "status": "needs_input" if issues else ("awaiting_approval" if require_approval else "approved"),
                "log": [f"check: {'; '.join(issues)}" if issues else f"check: all {len(checks)} checks passed"]}

    def route_check(state: PlannerState) -> str:
        if state["issues"]:
            return "resolve"
        return "approve" if require_approval else ("observe" if state.get("video") is not None else "execute")

    def observe(state: PlannerState, config: RunnableConfig) -> Command:
        """Track the targets over new frames, then re-plan on the newest frame (``resolve`` on a failed check)."""
        video = videos.get(thread_id(config), frame_source(state, config), state["video"])
        queries = state["queries"]
        if not video.roles:  # opened again here: re-query every role, follow what is nearest to the plan's boxes
            video.restore(queries, state["objects"], state.get("choices") or {})
        n = video.observe(observe_frames)
        objects, choices, log = refresh_objects(video, queries, state["objects"], {})
        s: dict[str, Any] = {**state, "objects": objects, "choices": choices}
        g = geometry(s)
        s.update(objects=g["objects"])
        p = plan(s, config)
        s.update(plan=p["plan"])
        c = check(s)
        update = {"objects": s["objects"], "choices": choices, "plan": s["plan"], "checks": c["checks"],
                  "issues": c["issues"], "video": video.state(), "targets": video.targets(),
                  "log": [f"observe: {n} new frame(s), now at frame {video.state()['frame']}", *video.drain(), *log,
                          *g["log"], *p["log"], *c["log"]]}
        if c["issues"]:
            return Command(goto="resolve", update={**update, "status": "needs_input"})
        return Command(goto="execute", update=update)

    def resolve(state: PlannerState, config: RunnableConfig) -> Command:
        failed = next(c for c in state["checks"] if not c["ok"])
        role, kind = failed["role"], failed["check"]
        perception = state["objects"].get(role) or {}
        query = state["queries"][role]
        attempts = dict(state.get("attempts") or {})
        n = attempts.get(role, 0)
        auto = (kind == "found" and n < max_attempts) or (kind == "unique" and n == 0 < max_attempts)
        # looked up only now: a lazily loaded pipeline has loaded by the time a mask is checked
        refine_fn = getattr(segmenter, "refine_object", None)
        if kind == "mask_box" and callable(refine_fn) and not attempts.get(f"{role}:refine") and not state.get("video"):
            attempts[f"{role}:refine"] = 1
            update = _refined(refine_fn, role, query, perception, int(failed["index"]), state)
            if update is not None:
                return Command(goto="geometry", update={**update, "attempts": attempts})
        if auto:
            problem = "not_found" if kind == "found" else "ambiguous"
            new = (refine_query_llm(query, problem, state["task"], model) if model is not None
                   else refine_query_rules(query, problem, n))
            attempts[role] = n + 1
            return Command(goto="perceive", update={
                "queries": {**state["queries"], role: new}, "attempts": attempts,
                "log": [f"resolve: {role} {problem.replace('_', ' ')}; re-query {n + 1}/{max_attempts}: {new!r}"]})
        payload = _question(kind, role, query, perception, failed, state)
        answer = _answer(interrupt(payload, response_schema=_ANSWER_SCHEMA))
        said = f"resolve: asked the human ({payload['kind']} {role}); answer {answer}"
        if answer.get("abort"):
            videos.close(thread_id(config))
            return Command(goto=END, update={"status": "aborted", "log": [said, "aborted by the human"]})
        if answer.get("query"):
            choices = {k: v for k, v in (state.get("choices") or {}).items() if k != role}
            return Command(goto="perceive", update={
                "queries": {**state["queries"], role: str(answer["query"])}, "choices": choices, "log": [said]})
        if answer.get("choice") is not None:
            try:
                choice = int(answer["choice"])
            except (TypeError, ValueError):
                choice = -1
            if not 0 <= choice < int(perception.get("count", 0)):
                return Command(goto="plan", update={"log": [said, f"choice {answer['choice']!r} does not exist; asking again"]})
            return Command(goto="plan", update={"choices": {**(state.get("choices") or {}), role: choice},
                                                "log": [said]})
        if answer.get("proceed") and kind != "found":
            update: dict[str, Any] = {"overrides": [*(state.get("overrides") or []), f"{role}:{kind}"], "log": [said]}
            if kind == "unique":
                update["choices"] = {**(state.get("choices") or {}), role: select(perception, role, {})["index"]}
            return Command(goto="plan", update=update)
        return Command(goto="plan", update={"log": [said, "the answer resolves nothing; asking again"]})

    def _refined(refine_fn: Callable[..., Any], role: str, query: str, perception: dict[str, Any], index: int,
                 state: PlannerState) -> dict[str, Any] | None:
        """Refine object ``index`` with the reasoner's point as a click, restarting from its box."""
        result = live.get((role, query))
        try:
            if result is None or index >= len(result.objects):
                result = segment(resolve_image(state["image"]), query)
                live[(role, query)] = result
            obj = result.objects[index]
            box = list(obj.box)
            x1, y1, x2, y2 = box
            inside = [p for p in obj.points if x1 <= p[0] <= x2 and y1 <= p[1] <= y2]
            click = list(inside[0]) if inside else [(x1 + x2) // 2, (y1 + y2) // 2]
            refined = refine_fn(result, index, add_points=[click], box=box)
        except Exception as exc:  # noqa: BLE001 - the human is asked instead
            logger.warning("refining %s #%d failed: %s", role, index, exc)
            return None
        live[(role, query)] = refined
        record = {**object_record(index, refined.objects[index]), "refined": True}
        objects = list(perception["objects"])
        objects[index] = record
        ag = record.get("agreement") or {}
        return {"objects": {**state["objects"], role: {**perception, "objects": objects}},
                "log": [f"resolve: {role} #{index}: the mask did not match its box; refined with a click at "
                        f"{tuple(click)} in box {box} -> {ag.get('inside', 0):.0%} inside, "
                        f"{ag.get('coverage', 0):.0%} of the box covered"]}

    def approve(state: PlannerState, config: RunnableConfig) -> Command:
        payload = {
            "type": "approval",
            "question": f"Execute this plan for {state['task']!r}? Resume with {{'approved': true}} or "
                        "{'approved': false, 'feedback': '...'}.",
            "task": state["task"],
            "plan": state["plan"],
            "steps": [f"{s['step']}. {s['description']}" for s in state["plan"]],
        }
        decision = _approval(interrupt(payload, response_schema=_APPROVAL_SCHEMA))
        if decision["approved"]:
            return Command(goto="observe" if state.get("video") is not None else "execute", update={"approval": decision, "status": "approved",
                                                   "log": ["approve: approved by the human"]})
        videos.close(thread_id(config))
        note = f"rejected by the human: {decision['feedback']}" if decision["feedback"] else "rejected by the human"
        return Command(goto=END, update={"approval": decision, "status": "rejected", "log": [f"approve: {note}"]})

    def execute(state: PlannerState, config: RunnableConfig) -> dict[str, Any]:
        results, steps, log = [], [], []
        for step in state["plan"]:
            outcome = DRY_RUN if executor is None else executor(step, dict(state))
            outcome = "executed" if outcome is None else outcome
            results.append({"step": step["step"], "action": step["action"], "outcome": outcome})
            steps.append({**step, "status": outcome if isinstance(outcome, str) else "executed"})
            log.append(f"execute: {step['step']}. {step['description']} -> {outcome}")
        videos.close(thread_id(config))
        return {"results": results, "plan": steps, "status": "executed", "log": log}

    g = StateGraph(PlannerState, input_schema=PlannerInput)
    g.add_node("understand_task", understand_task)
    g.add_node("perceive", perceive)
    g.add_node("geometry", geometry)
    g.add_node("plan", plan)
    g.add_node("check", check)
    g.add_node("resolve", resolve, destinations=("perceive", "geometry", "plan", END))
    g.add_node("approve", approve, destinations=("observe", "execute", END))
    g.add_node("observe", observe, destinations=("execute", "resolve"))
    g.add_node("execute", execute)
    g.add_edge(START, "understand_task")
    g.add_edge("understand_task", "perceive")
    g.add_edge("perceive", "geometry")
    g.add_edge("geometry", "plan")
    g.add_edge("plan", "check")
    g.add_conditional_edges("check", route_check, ["resolve", "approve", "observe", "execute"])
    g.add_edge("execute", END)
    # every automatic re-query costs five steps (resolve, perceive, geometry, plan, check)
    limit = max(25, 13 + 5 * (2 * max_attempts + 2))
    return g.compile(checkpointer=checkpointer, name=name).with_config(recursion_limit=limit)


def _question(kind: str, role: str, query: str, perception: dict[str, Any], failed: dict[str, Any],
              state: PlannerState) -> dict[str, Any]:
    """The interrupt payload for a precondition the planner cannot fix alone (JSON-ready)."""
    action = state["spec"]["action"]
    tried = perception.get("tried") or [query]
    if kind == "found":
        k = "not_found"
        text = (f"I could not find {state['spec'][role]!r} in the image (tried: "
                + ", ".join(repr(t) for t in tried)
                + "). Resume with {'query': '<a better description>'} or {'abort': true}.")
    elif kind == "unique":
        k = "ambiguous"
        listing = "; ".join(f"#{c['index']} box {c['box']} area {c['area']}" for c in _candidates(perception))
        text = (f"I found {perception['count']} candidates for {query!r}: {listing}. Which one should I "
                f"{action}? Resume with {{'choice': <index>}}, {{'query': '<a better description>'}} "
                "or {'abort': true}.")
    elif kind == "mask_box":
        k = "mask_off_box"
        text = (f"The mask I got does not fit the object I located: {failed['detail']}"
                + (" (also after a refinement click)" if (state.get("attempts") or {}).get(f"{role}:refine") else "")
                + ". Resume with {'proceed': true} to use it anyway, {'choice': <index>} for another candidate, "
                "{'query': '<a better description>'} or {'abort': true}.")
    else:
        k = "unreachable"
        text = (f"Step {failed.get('step')} is not reachable: {failed['detail']}. Resume with "
                "{'proceed': true} to keep it, {'choice': <index>} for another candidate, "
                "{'query': '<a better description>'} or {'abort': true}.")
    return {"type": "question", "kind": k, "role": role, "query": query, "question": text,
            "candidates": _candidates(perception), "tried": tried, "issues": list(state.get("issues") or [])}


__all__ = ["DRY_RUN", "Executor", "TaskSpec", "build_planner_graph"]
