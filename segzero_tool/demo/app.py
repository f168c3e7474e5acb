"""The page of ``segzero demo`` (Gradio): pick or upload a picture, ask, look at the overlay, the reasoning and the
objects, click to refine, undo, download.

Every event handler calls :class:`~segzero_tool.demo.session.DemoSession` and returns the page's new state
(:func:`render`); a problem the person can fix is shown in the message line, a failure of the models too (one line,
the app keeps serving). The models load in the background when the app starts: the page answers at once and says
``loading`` until they are ready.
"""

# No ``from __future__ import annotations`` here: Gradio reads the handlers' annotations (``gr.SelectData``) as
# objects, so they are evaluated when the handlers are defined (inside build_app, where gradio is imported).
import functools
import inspect
import logging
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import SegZeroError
from .session import DemoError, DemoSession

logger = logging.getLogger(__name__)

#: Labels of the click modes in the page -> DemoSession.click modes.
MODES = {"add a point (+)": "add", "remove a point (−)": "remove", "box: click two corners": "box"}
TABLE_HEADERS = ["#", "shown", "box [x1, y1, x2, y2]", "score", "area (px)"]


class Models:
    """The pipeline, loaded in a background thread (``load`` builds it); ``get`` waits for it."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load
        self._ready = threading.Event()
        self.pipeline: Any = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="segzero-demo-load", daemon=True)

    def start(self) -> "Models":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.pipeline = self._load()
        except Exception as exc:  # shown in the page; the app keeps serving its message
            logger.exception("loading the models failed")
            self.error = " ".join(str(exc).split())[:500] or type(exc).__name__
        finally:
            self._ready.set()

    def status(self) -> str:
        if not self._ready.is_set():
            return "Models: loading …"
        if self.error is not None:
            return f"Models: could not be loaded: {self.error}"
        p = self.pipeline
        reasoner = getattr(p.reasoner, "model_id", None) or ("none" if p.reasoner is None else type(p.reasoner).__name__)
        segmenter = getattr(p.segmenter, "model_id", None) or type(p.segmenter).__name__
        return f"Models: ready (reasoner {reasoner}, segmenter {segmenter})"

    def get(self, timeout: float | None = None) -> Any:
        if not self._ready.wait(timeout):
            raise DemoError("the models are still loading; try again in a moment")
        if self.error is not None:
            raise DemoError(f"the models could not be loaded: {self.error}")
        return self.pipeline


#: Hides the row that carries a dragged box to the server.
HIDDEN_CSS = ".segzero-hidden { display: none !important; }"

#: In the page: a press, a move of more than 6 shown pixels and a release on the result picture is a dragged box; its
#: corners (in the picture's own pixels) go to the hidden #drag-box field and #drag-go is pressed; the click that
#: follows the release is swallowed, so a drag is not also a point. A rectangle follows the pointer while dragging.
DRAG_JS = """
(() => {
  let start = null, rect = null, justDragged = false;
  const img = (t) => t && t.closest && t.closest('#view') ? t.closest('#view').querySelector('img') : null;
  const at = (im, e) => {
    const r = im.getBoundingClientRect();
    return [(e.clientX - r.left) * im.naturalWidth / r.width, (e.clientY - r.top) * im.naturalHeight / r.height,
            e.clientX, e.clientY];
  };
  document.addEventListener('mousedown', (e) => {
    const im = img(e.target); if (!im || e.button !== 0) return;
    start = {im, p: at(im, e)}; e.preventDefault();
  }, true);
  document.addEventListener('mousemove', (e) => {
    if (!start) return;
    const [, , cx, cy] = at(start.im, e), [, , sx, sy] = start.p;
    if (Math.abs(cx - sx) + Math.abs(cy - sy) < 6) return;
    if (!rect) { rect = document.createElement('div'); rect.id = 'drag-rect';
      rect.style.cssText = 'position:fixed;border:2px dashed #f97316;pointer-events:none;z-index:9999';
      document.body.appendChild(rect); }
    Object.assign(rect.style, {left: Math.min(sx, cx) + 'px', top: Math.min(sy, cy) + 'px',
                               width: Math.abs(cx - sx) + 'px', height: Math.abs(cy - sy) + 'px'});
  }, true);
  document.addEventListener('mouseup', (e) => {
    if (!start) return;
    const s = start; start = null;
    if (rect) { rect.remove(); rect = null; }
    const p = at(s.im, e);
    if (Math.abs(p[2] - s.p[2]) + Math.abs(p[3] - s.p[3]) < 6) return;  // a click, not a drag
    justDragged = true; setTimeout(() => { justDragged = false; }, 400);
    const box = document.querySelector('#drag-box textarea, #drag-box input');
    box.value = [s.p[0], s.p[1], p[0], p[1]].map((v) => v.toFixed(1)).join(',');
    box.dispatchEvent(new Event('input', {bubbles: true}));
    setTimeout(() => document.querySelector('#drag-go').click(), 50);
  }, true);
  document.addEventListener('click', (e) => {
    if (justDragged && img(e.target)) { e.stopPropagation(); e.preventDefault(); justDragged = false; }
  }, true);
})();
"""


def render(session: DemoSession | None, message: str = "") -> tuple[Any, ...]:
    """The page's outputs: view, reasoning, table, shown objects (choices and values), selected object, status."""
    import gradio as gr

    if session is None:
        return (None, "", [], gr.update(choices=[], value=[]), gr.update(choices=[], value=None),
                message or "Pick a picture.")
    result = session.result
    n = len(result.objects) if result is not None else 0
    indices = list(range(n))
    shown = [i for i in indices if i not in session.hidden]
    reasoning = "" if result is None else (result.reasoning or ("(no reasoning: objects from boxes and clicks)"
                                                                if result.reasoner is None else "(no <think> text)"))
    status = session.status() + (f" {message}" if message else "")
    return (session.view(), reasoning, session.table(), gr.update(choices=indices, value=shown),
            gr.update(choices=indices, value=session.selected), status)


def build_app(models: Models, *, folder: str | Path | None = None, examples: list[str] | None = None,
              view_side: int = 1024) -> Any:
    """The Gradio ``Blocks`` of the demo over ``models`` (sessions write their downloads under ``folder``)."""
    import gradio as gr

    root = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="segzero-demo-"))

    def session_of(state: DemoSession | None) -> DemoSession:
        if state is not None:
            return state
        return DemoSession(models.get(timeout=0), root / f"session-{uuid.uuid4().hex[:8]}", view_side=view_side)

    def guarded(fn: Callable[..., Any]) -> Callable[..., tuple[Any, ...]]:
        @functools.wraps(fn)  # Gradio reads fn's signature: the event data and progress it asks for
        def handler(state: DemoSession | None, *args: Any) -> tuple[Any, ...]:
            try:
                state = session_of(state)
                message = fn(state, *args) or ""
            except DemoError as exc:
                message = f"Problem: {exc}"
            except SegZeroError as exc:
                message = f"Problem: {' '.join(str(exc).split())}"
            except Exception as exc:  # a model failure: one line, the app keeps serving
                logger.exception("demo handler failed")
                message = f"Error: the model failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            return (state, *render(state, message))
        return handler

    def on_image(session: DemoSession, image: Any) -> str | None:
        if image is None:
            return None
        # Gradio's file data as uploaded (preprocess=False below): Gradio's own decoding fails on a file that is not a
        # picture before any handler runs, with no message; load_image says what is wrong
        session.set_image(image.get("path") if isinstance(image, dict) else image)
        return None

    def on_ask(session: DemoSession, query: str, progress: Any = gr.Progress()) -> str:  # noqa: B008 - Gradio asks so
        progress(0.1, desc="reasoning and segmenting …")
        result = session.ask(query)
        progress(1.0)
        if result.objects or result.parse_status.value not in ("ok", "no_objects"):  # the status line says it
            return ""
        return "The model found nothing for this question."

    def on_click(session: DemoSession, mode_label: str, evt: gr.SelectData) -> str:
        x, y = evt.index[:2]
        made = session.click(x, y, MODES.get(mode_label, "add"))
        return "" if made is not None else "Now click the opposite corner of the box."

    def on_drag(session: DemoSession, box_text: str) -> str | None:
        try:
            x1, y1, x2, y2 = (float(v) for v in (box_text or "").split(","))
        except ValueError:
            raise DemoError(f"could not read the dragged box {box_text!r}") from None
        (ax, ay), (bx, by) = session.to_image_xy(x1, y1), session.to_image_xy(x2, y2)
        session.corner = None
        session.add_box([min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)])
        return None

    def on_select(session: DemoSession, index: Any) -> str | None:
        session.select(None if index is None or index == "" else int(index))
        return None

    def on_shown(session: DemoSession, shown: list[int]) -> str | None:
        session.show_only(shown or [])
        return None

    def on_undo(session: DemoSession) -> str:
        session.undo()
        return "Undone."

    downloads: dict[int, list[str]] = {}

    def on_download(session: DemoSession) -> str:
        downloads[id(session)] = [str(p) for p in session.download()]
        return "Files ready below."

    page = {"head": f"<script>{DRAG_JS}</script>", "css": HIDDEN_CSS}
    takes = inspect.signature(gr.Blocks.__init__).parameters  # Gradio 5: Blocks(head=, css=); 6: launch(head=, css=)
    with gr.Blocks(title="segzero demo", **{k: v for k, v in page.items() if k in takes}) as app:
        app.segzero_launch = {k: v for k, v in page.items() if k not in takes}  # for launch(): see cli_demo
        gr.Markdown("## segzero: segment by reasoning\nAsk for what you need in words; click on the picture to refine.")
        model_status = gr.Markdown(models.status())
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                picture = gr.Image(label="Picture", type="filepath", sources=["upload", "clipboard"],
                                   elem_id="picture")
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[picture], label="Examples")
                query = gr.Textbox(label="Question", placeholder="What can I drink here?", elem_id="query")
                ask = gr.Button("Segment", variant="primary", elem_id="segment")
                mode = gr.Radio(list(MODES), value=next(iter(MODES)), label="A click on the result",
                                elem_id="mode")
                with gr.Row():
                    undo = gr.Button("Undo", elem_id="undo")
                    download = gr.Button("Download", elem_id="download")
                files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="files")
            with gr.Column(scale=2):
                message = gr.Markdown("Pick a picture.", elem_id="message")
                view = gr.Image(label="Result (click to refine)", interactive=False, type="pil", elem_id="view")
                reasoning = gr.Textbox(label="Reasoning", lines=4, interactive=False, elem_id="reasoning")
                table = gr.Dataframe(headers=TABLE_HEADERS, label="Objects", interactive=False, elem_id="objects")
                with gr.Row():
                    shown = gr.CheckboxGroup(label="Shown objects", choices=[], elem_id="shown")
                    selected = gr.Dropdown(label="Selected object (clicks refine it)", choices=[],
                                           elem_id="selected")
        outputs = [state, view, reasoning, table, shown, selected, message]
        picture.change(guarded(on_image), [state, picture], outputs, preprocess=False)
        ask.click(guarded(on_ask), [state, query], outputs)
        query.submit(guarded(on_ask), [state, query], outputs)
        view.select(guarded(on_click), [state, mode], outputs)
        # a box dragged on the result (DRAG_JS writes "x1,y1,x2,y2" in shown-picture pixels and presses the button)
        with gr.Row(elem_classes=["segzero-hidden"]):
            drag_box = gr.Textbox(elem_id="drag-box", show_label=False, container=False)
            drag_go = gr.Button("add dragged box", elem_id="drag-go")
        drag_go.click(guarded(on_drag), [state, drag_box], outputs)
        selected.input(guarded(on_select), [state, selected], outputs)
        shown.input(guarded(on_shown), [state, shown], outputs)
        undo.click(guarded(on_undo), [state], outputs)
        download.click(guarded(on_download), [state], outputs).then(
            lambda s: downloads.pop(id(s), None) if s is not None else None, [state], [files])
        timer = gr.Timer(1.0)
        timer.tick(lambda: (models.status(), gr.update(active=not models._ready.is_set())), None, [model_status, timer])
    return app


__all__ = ["DRAG_JS", "HIDDEN_CSS", "MODES", "TABLE_HEADERS", "Models", "build_app", "render"]
