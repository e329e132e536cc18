"""Load checkpoints written before a module was reorganised (old state-dict keys)."""
from typing import Dict, List, Mapping

__all__ = ['rename_legacy_keys']


def rename_legacy_keys(state_dict: Dict, prefix: str, table: Mapping[str, str]) -> List[str]:
    """Rename ``prefix + old`` to ``prefix + new`` in ``state_dict``, in place.

    Called by a module's ``_load_from_state_dict`` before its children load, so the
    children find their keys. A key present under both names keeps the new one.

    Args:
        state_dict (dict): the (mutable) state dict being loaded.
        prefix (str): the module's prefix (e.g. ``'decode_head.'``).
        table (Mapping[str, str]): old key → new key, both without ``prefix``.

    Returns:
        list[str]: the old keys that were found (without ``prefix``).
    """
    found = []
    for old, new in table.items():
        if prefix + old in state_dict:
            value = state_dict.pop(prefix + old)
            state_dict.setdefault(prefix + new, value)
            found.append(old)
    return found
