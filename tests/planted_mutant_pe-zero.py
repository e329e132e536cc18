# Mutant of the planted-bias stage 1 (tests/planted_bias_mutants.py): B = 0 throughout.
_base_ = ['../benchmarks/planted_bias/configs/planted_reclip.py']
custom_imports = dict(
    imports=['mmseg_reclip', 'benchmarks.planted_bias', 'tests.planted_bias_mutants'],
    allow_failed_imports=False)
model = dict(decode_head=dict(bias_extractor=dict(type='ZeroPEBiasExtractor')))
