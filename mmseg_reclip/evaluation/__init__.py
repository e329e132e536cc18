"""Evaluation: the bias metrics of the paper (Table VII) and the bias-map adapter."""
from .metrics import ClassPreferenceMetric, SpacePreferenceMetric  # noqa: F401

__all__ = ['ClassPreferenceMetric', 'SpacePreferenceMetric']
