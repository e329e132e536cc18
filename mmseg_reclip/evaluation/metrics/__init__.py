from .class_preference_metric import ClassPreferenceMetric
from .space_preference_metric import SpacePreferenceMetric

__all__ = ['ClassPreferenceMetric', 'SpacePreferenceMetric']
