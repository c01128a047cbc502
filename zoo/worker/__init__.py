"""One framework per process.

The frameworks' native libraries collide inside one process (torch or paddle loaded before
mindspore breaks mindspore), so work that needs a framework other than the caller's runs in a
child process that imports exactly one framework; arrays travel through files.

``client`` starts the child and turns its structured result back into the same error; ``server``
is the child (``python -m zoo.worker FRAMEWORK COMMAND ...``). The client imports nothing that
imports it back.
"""

from .client import require_installed, run_job, run_worker

__all__ = ["require_installed", "run_job", "run_worker"]
