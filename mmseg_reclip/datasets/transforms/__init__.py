from .pseudo_label import LoadPseudoLabel, PackPseudoLabelInputs

__all__ = ['LoadPseudoLabel', 'PackPseudoLabelInputs']
