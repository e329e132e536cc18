# Mutant of the planted-bias stage 1 (tests/planted_bias_mutants.py): the bias is
# computed but not subtracted (Lr = Lq).
_base_ = ['../benchmarks/planted_bias/configs/planted_reclip.py']
model = dict(decode_head=dict(bias_mode='none'))
