"""The one container image every component runs on."""

import os

DEFAULT_IMAGE = "kfp-retrain:0.1.0"


def component_image() -> str:
    """The image named in the compiled YAML: ``$RETRAIN_IMAGE`` at compile time, else the default.

    Read when :mod:`components.ops` is imported (that is, when the pipeline is compiled), and
    nowhere else. Use an immutable tag, never ``latest``.
    """
    return os.environ.get("RETRAIN_IMAGE", DEFAULT_IMAGE)
