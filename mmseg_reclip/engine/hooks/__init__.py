from .class_check_hook import DatasetClassCheckHook, check_num_classes
from .crop_vote_hook import (CropVoteHypothesisHook, global_hypothesis, votes_to_hypothesis,
                             window_boxes)

__all__ = [
    'CropVoteHypothesisHook', 'window_boxes', 'votes_to_hypothesis', 'global_hypothesis',
    'DatasetClassCheckHook', 'check_num_classes'
]
