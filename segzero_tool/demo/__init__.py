"""``segzero demo``: a web page for people (Gradio) over the same pipeline as ``segzero segment``.

:mod:`.session` holds what a person does (pick, ask, click to refine, undo, download) without any web framework;
:mod:`.app` builds the page on it. Gradio loads only when the page is built (the ``demo`` extra).
"""
