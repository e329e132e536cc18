"""The class set a trained head was built for, stored inside its checkpoint.

A head's query embeddings ``Q``, reference prompts and mask decoder are only meaningful
for the class names (and prompt templates) they were built from. The heads save that
class set in their ``state_dict`` (``<prefix>_extra_state``, via ``get_extra_state``)
and compare it with their own config when a checkpoint is loaded, so that a checkpoint
of another dataset fails loudly instead of predicting with the wrong (or all-zero)
queries.

The stored value is a ``uint8`` tensor of UTF-8 JSON: it survives
``torch.load(weights_only=True)`` and mmengine's ``weights_to_cpu``.
"""
import hashlib
import json
import logging
from typing import List, Optional, Sequence, Union

import torch
from mmengine.logging import print_log

#: Version of the stored record (bump when its fields change meaning).
CLASS_SET_VERSION = 1


class ClassSetMismatchError(ValueError):
    """A checkpoint was trained for other classes (or templates) than the config's."""


def templates_id(templates: Union[str, Sequence[str], None],
                 resolved: Optional[Sequence[str]]) -> Optional[str]:
    """An identifier of a template set: its key, or ``'custom-<sha>'`` of the list.

    Args:
        templates: the config value (a key such as ``'reclip85'`` or a list).
        resolved: the templates it resolves to (what ``Q`` was built from).
    """
    if resolved is None:
        return None
    digest = hashlib.sha256(json.dumps(list(resolved)).encode()).hexdigest()[:12]
    if isinstance(templates, str):
        return f'{templates}-{digest}'
    return f'custom-{digest}'


def encode_class_set(class_names: Sequence[Sequence[str]],
                     templates: Optional[str]) -> torch.Tensor:
    """``uint8`` tensor of the JSON record ``{version, class_names, templates}``."""
    record = dict(
        version=CLASS_SET_VERSION,
        class_names=[list(names) for names in class_names],
        templates=templates)
    data = json.dumps(record, ensure_ascii=False).encode('utf-8')
    return torch.tensor(list(data), dtype=torch.uint8)


def decode_class_set(value) -> dict:
    """Inverse of :func:`encode_class_set` (accepts the tensor or an already-decoded dict)."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
        raise ClassSetMismatchError(
            'The checkpoint\'s stored class set is not a 1-d uint8 tensor (got '
            f'{type(value).__name__}); the checkpoint is damaged or not from mmseg-reclip.')
    try:
        record = json.loads(bytes(value.cpu().tolist()).decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ClassSetMismatchError(
            f'The checkpoint\'s stored class set is unreadable ({err}); the checkpoint is '
            'damaged.') from None
    if not isinstance(record, dict) or 'class_names' not in record:
        raise ClassSetMismatchError('The checkpoint\'s stored class set has no class_names; '
                                    'the checkpoint is damaged.')
    return record


def _short(names: List[List[str]], limit: int = 30) -> str:
    flat = ['/'.join(n) for n in names]
    text = ', '.join(flat[:limit])
    return f'[{text}{", ..." if len(flat) > limit else ""}] ({len(flat)} classes)'


def check_class_set(stored: dict,
                    class_names: Sequence[Sequence[str]],
                    templates: Optional[str],
                    owner: str,
                    check_templates: bool = True) -> None:
    """Raise :class:`ClassSetMismatchError` when ``stored`` differs from the config.

    Args:
        stored (dict): decoded record of the checkpoint.
        class_names: the config's class names (synonym lists).
        templates (str, optional): the config's :func:`templates_id`.
        owner (str): module name for the message (e.g. ``'decode_head'``).
        check_templates (bool): also compare the template sets.
    """
    ckpt_names = [list(n) for n in stored['class_names']]
    own_names = [list(n) for n in class_names]
    if ckpt_names != own_names:
        diff = [
            i for i in range(min(len(ckpt_names), len(own_names))) if ckpt_names[i] != own_names[i]
        ]
        where = (f'first difference at class {diff[0]}: checkpoint {ckpt_names[diff[0]]} vs '
                 f'config {own_names[diff[0]]}' if diff else 'the class counts differ')
        raise ClassSetMismatchError(
            f'The checkpoint was trained for other classes than the config ({owner}; '
            f'{where}).\n  checkpoint: {_short(ckpt_names)}\n  config:     '
            f'{_short(own_names)}\nUse the config of the dataset the checkpoint was trained '
            'on (same class_names, same order), or a checkpoint trained for these classes.')
    stored_templates = stored.get('templates')
    if (check_templates and stored_templates is not None and templates is not None
            and stored_templates != templates):
        raise ClassSetMismatchError(
            f'The checkpoint\'s query embeddings were built with the template set '
            f'{stored_templates!r}, the config asks for {templates!r} ({owner}). Set the '
            'head\'s `templates` to the checkpoint\'s set, or retrain.')


def warn_unverified(owner: str, num_classes: int) -> None:
    """One-line warning for checkpoints written before class sets were stored."""
    print_log(
        f'{owner}: the checkpoint stores no class names (written by an older '
        f'mmseg-reclip or converted from the released code), so its classes cannot be '
        f'verified against the config\'s {num_classes}; make sure they are the same.',
        logger='current',
        level=logging.WARNING)


class ClassSetStateMixin:
    """Save the class set in ``state_dict`` and refuse checkpoints of another one.

    For ``nn.Module`` heads with ``class_names`` (synonym lists), ``num_classes`` and
    ``templates_id`` (``None`` when the head has no templates of its own). Put it before
    the ``nn.Module`` base: ``class Head(ClassSetStateMixin, BaseDecodeHead)``.

    Loading (any path: ``load_state_dict``, mmengine's ``load_checkpoint``,
    ``load_from``, ``init_model``) raises :class:`ClassSetMismatchError` before any
    tensor is copied when the stored class names differ from the config's, or when a
    tensor of the head has another shape than the checkpoint's (mmengine would only
    warn and keep the un-loaded tensor). A checkpoint without a stored class set loads
    with a one-line warning.
    """

    #: compare stored template sets (heads that build ``Q`` from their own templates)
    check_templates = True

    def get_extra_state(self) -> torch.Tensor:
        return encode_class_set(self.class_names, self.templates_id)

    def set_extra_state(self, state) -> None:
        # Verified in `_load_from_state_dict` before anything was copied.
        if self.templates_id is None:
            self.templates_id = decode_class_set(state).get('templates')

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        owner = prefix.rstrip('.') or type(self).__name__
        key = prefix + '_extra_state'
        if key in state_dict:
            check_class_set(
                decode_class_set(state_dict[key]), self.class_names, self.templates_id, owner,
                self.check_templates)
        else:
            warn_unverified(owner, self.num_classes)
        self._check_shapes(state_dict, prefix, owner)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if key not in state_dict and key in missing_keys:
            missing_keys.remove(key)  # old checkpoint: warned above

    def _check_shapes(self, state_dict: dict, prefix: str, owner: str) -> None:
        own = {
            k: v
            for k, v in self.state_dict(prefix=prefix).items() if k != prefix + '_extra_state'
        }
        bad = [(k, tuple(state_dict[k].shape), tuple(v.shape)) for k, v in own.items()
               if k in state_dict and isinstance(state_dict[k], torch.Tensor)
               and tuple(state_dict[k].shape) != tuple(v.shape)]
        if bad:
            shown = '; '.join(f'{k}: checkpoint {a} vs config {b}' for k, a, b in bad[:4])
            raise ClassSetMismatchError(
                f'The checkpoint does not fit {owner} ({len(bad)} tensors of another shape: '
                f'{shown}). The config has {self.num_classes} classes '
                f'{_short(self.class_names)}; use the config the checkpoint was trained with '
                '(same class_names and head settings).')
