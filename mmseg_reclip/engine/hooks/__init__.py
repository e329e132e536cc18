from .class_check_hook import DatasetClassCheckHook

__all__ = ['DatasetClassCheckHook']
