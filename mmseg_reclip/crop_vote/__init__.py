"""Crop voting (docs/method.md §5): each training image's multi-label hypothesis.

``vote`` holds the pure functions (windows, votes, CLIP's global scores), ``crops`` the
dataloader that reads and cuts the images, ``prepass`` the batched, distributed pass
over the training set, ``hook`` the registered :class:`CropVoteHypothesisHook` that
wires them into training (cache, attach to data samples) and ``hypothesis`` the
read-back of a sample's hypothesis by the losses. Importing this package registers the
hook.
"""
from .hook import CropVoteHypothesisHook

__all__ = ['CropVoteHypothesisHook']
