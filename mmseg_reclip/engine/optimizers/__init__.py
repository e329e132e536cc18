from .amp_optim_wrapper import DeviceAmpOptimWrapper
from .trainable_constructor import TrainableOptimWrapperConstructor

__all__ = ['DeviceAmpOptimWrapper', 'TrainableOptimWrapperConstructor']
