# Distillation schedule (docs/method.md §8): the stage-1 schedule, with poly decay down to 1e-4.
_base_ = ['./schedule_20k.py']
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=20000, by_epoch=False)]
