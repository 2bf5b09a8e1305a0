"""How handlers reach components. Each tab registers its components by name in the app's one Ui; a handler that
updates several of them returns Updates(name=value, ...), and Ui.on wires it with inputs and outputs given by name,
turning the names into the components Gradio expects. One name may stand for several components: `board` is the
leaderboard on both the Train and the Evaluate tab. Handlers stay plain functions, callable without a server."""
from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable

import gradio as gr


log = logging.getLogger("logoapp")


def quiet_error(fn_name: str, e: gr.Error) -> None:
    """A user's mistake (a gr.Error a handler raised): one line in the server's log instead of Gradio's traceback."""
    if e.print_exception:
        log.warning("%s refused: %s", fn_name, " ".join(str(e.message).split())[:300])
        e.print_exception = False


class Updates(dict):
    """{component name: value or gr.update(...)} from a handler; `a | b` merges (b wins)."""

    def __or__(self, other: dict) -> Updates:
        return Updates({**self, **other})


class Ui:
    """Every component of one app by name, and the one way handlers are connected to them."""

    def __init__(self):
        self.named: dict[str, list[Any]] = {}

    def add(self, **components) -> None:
        for name, c in components.items():
            self.named.setdefault(name, []).append(c)

    def __getitem__(self, name: str):
        return self.named[name][0]

    def all(self, names) -> list:
        """Components by name, in order; a name standing for several gives them all."""
        if isinstance(names, str):
            names = [names]
        return [c for n in names for c in self.named[n]]

    def resolve(self, out):
        """A handler's Updates -> {component: value} for Gradio; anything else passes through unchanged."""
        if not isinstance(out, Updates):
            return out
        if not out:
            return gr.skip()
        return {c: v for name, v in out.items() for c in self.named[name]}

    def handler(self, fn: Callable) -> Callable:
        """fn as Gradio will call it: same signature, docstring and annotations (so Gradio still finds its
        gr.Progress, gr.SelectData and API parameters), its Updates resolved to components."""
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def stream(*args, **kwargs):
                it = fn(*args, **kwargs)
                try:
                    for out in it:
                        yield self.resolve(out)
                except gr.Error as e:
                    quiet_error(fn.__name__, e)
                    raise
                finally:
                    it.close()  # a stopped stream runs the handler's own clean-up now, not at garbage collection
            return stream

        @functools.wraps(fn)
        def call(*args, **kwargs):
            try:
                return self.resolve(fn(*args, **kwargs))
            except gr.Error as e:
                quiet_error(fn.__name__, e)
                raise
        return call

    def on(self, triggers: str | list[str], fn: Callable, inputs, outputs, **kwargs):
        """Connect fn to 'component.event' (or several, through gr.on); inputs and outputs by name."""
        ins = self.all(inputs) if inputs else None
        outs = self.all(outputs) if outputs else None
        if isinstance(triggers, str):
            name, event = triggers.rsplit(".", 1)
            return getattr(self[name], event)(self.handler(fn), ins, outs, **kwargs)
        listeners = [getattr(self[n], e) for n, e in (t.rsplit(".", 1) for t in triggers)]
        return gr.on(listeners, self.handler(fn), ins, outs, **kwargs)
