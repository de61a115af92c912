"""Vector drawings (`application/x-sorna-drawing`): decode, per-session canvas state, SVG/PNG
rendering, the Jupyter translator (`drawing.jupyter.translate_drawing`) and the remote-side
producer API (`drawing.producer`).

Kept light: importing the package loads none of them; import the submodule you need.
"""

from remote_kernel.protocol import MIME_DRAWING_JSON, MIME_SORNA_DRAWING

__all__ = ["MIME_SORNA_DRAWING", "MIME_DRAWING_JSON"]
