"""What the widget tests share."""

import ipywidgets as w


def value_controls(widget):
    """Every value control inside ``widget`` (sliders, selections, dropdowns), depth first."""
    out, todo = [], [widget]
    while todo:
        x = todo.pop()
        if isinstance(x, w.Box):
            todo.extend(x.children)
        elif hasattr(x, "value") and not isinstance(x, (w.Output, w.HTML, w.Button)):
            out.append(x)
    return out
