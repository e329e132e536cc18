from .class_check_hook import DatasetClassCheckHook
from .crop_vote_hook import CropVoteHypothesisHook, window_boxes

__all__ = ['CropVoteHypothesisHook', 'window_boxes', 'DatasetClassCheckHook']
