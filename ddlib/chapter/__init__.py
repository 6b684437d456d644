"""Code that exists to show one section of the chapter, not to train with.

Each module belongs to a section (or a few): ``graph`` (3.2.1-3.2.2), ``backprop``
(the three recursions, 3.2.3-3.2.6), ``vanishing`` (3.4), ``descent`` (Fig. 3.9 and
3.3.2), ``surfaces`` (the 2-D losses of 3.5), ``race`` (the optimizer race),
``batchnorm_studies`` (3.6) and ``search_studies`` (3.3.1).  They build on the library;
the library never imports them.  Import them by name, e.g.
``from ddlib.chapter import surfaces``.
"""

import importlib

_MODULES = {"graph", "backprop", "vanishing", "descent", "surfaces", "race",
            "batchnorm_studies", "search_studies"}


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'ddlib.chapter' has no attribute {name!r}")


def __dir__():
    return sorted(_MODULES)
