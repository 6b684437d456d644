"""pytest plugin for the notebook suite: nbval compares every output except stderr.

Warnings and progress bars go to stderr and differ between machines, so both the stored
and the fresh outputs drop their stderr streams before nbval compares them.
"""

import nbval.plugin as _nbval

_original = _nbval.transform_streams_for_comparison


def _without_stderr(outputs):
    kept = [o for o in outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    return _original(kept)


_nbval.transform_streams_for_comparison = _without_stderr
