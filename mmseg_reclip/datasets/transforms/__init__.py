from .pseudo_label import LoadPseudoLabel  # noqa: F401
