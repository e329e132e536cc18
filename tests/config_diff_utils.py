"""Config comparison helpers of the experiment-config tests: which model/hook keys two
built configs differ in (the paper's step-by-step rows change exactly one)."""
from mmengine.config import Config


def built_config(path, drop_prefix='conference_'):
    """The config at ``path`` as a plain dict, without the top-level helper variables
    whose names start with ``drop_prefix`` (the conference parts' values)."""
    cfg = Config.fromfile(path).to_dict()
    return {k: v for k, v in cfg.items() if not k.startswith(drop_prefix)}


def leaves(d, prefix=''):
    """``{'model.decode_head.bias_mode': 'subtract', ...}``: every leaf of a config dict
    (lists of dicts are one leaf, as an override replaces a list whole)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(leaves(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out


def changed_keys(a, b):
    """The top-level model/hook *component* keys whose values differ (e.g.
    ``model.decode_head.mask_decoder``, ``custom_hooks``), and any other changed leaf."""
    la, lb = leaves(a), leaves(b)
    keys = {k for k in set(la) | set(lb) if la.get(k, '<absent>') != lb.get(k, '<absent>')}
    components = set()
    for k in keys:
        parts = k.split('.')
        if parts[:2] == ['model', 'decode_head'] and len(parts) > 3:
            k = '.'.join(parts[:3])  # a component config: one key
        components.add(k)
    return components
