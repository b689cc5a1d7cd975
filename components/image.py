"""The one container image every component runs on."""

import os

from components.params import InvalidParameterError

DEFAULT_IMAGE = "kfp-retrain:0.1.0"
IMAGE_ENV = "RETRAIN_IMAGE"


def component_image() -> str:
    """The image named in the compiled YAML: ``$RETRAIN_IMAGE`` at compile time, else the default.

    Read when :mod:`components.kfp_components` is imported (that is, when the pipeline is compiled), and
    nowhere else. Use an immutable tag, never ``latest``.
    """
    return os.environ.get(IMAGE_ENV, DEFAULT_IMAGE)


def check_image_tag(image: str) -> None:
    """Refuse an image a compiled spec must not name: no tag, or ``latest``.

    A spec is a record of what ran; a moving tag makes two runs of one spec run different code.
    """
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    if digest:
        return
    if not tag or tag == "latest":
        raise InvalidParameterError(
            f"image {image!r} needs an immutable tag (e.g. :0.2.0 or a git SHA) or a digest; "
            "a compiled spec never names ':latest' or an untagged image")
