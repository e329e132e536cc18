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


ClassList = Sequence[Union[str, Sequence[str]]]


def _synonyms(classes: ClassList) -> List[List[str]]:
    return [[c] if isinstance(c, str) else list(c) for c in classes]


def _short(names: ClassList, limit: int = 30) -> str:
    flat = ['/'.join(n) for n in _synonyms(names)]
    text = ', '.join(flat[:limit])
    return f'[{text}{", ..." if len(flat) > limit else ""}] ({len(flat)} classes)'


def _first_difference(found: List[List[str]], expected: List[List[str]], names: bool,
                      display: bool) -> Optional[str]:
    """Where two class lists differ (``None``: they agree); ``display``: compare first
    names only (one side lists display names)."""
    if len(found) != len(expected):
        return f'{len(found)} classes vs {len(expected)}'
    if not names:
        return None
    for i, (a, b) in enumerate(zip(found, expected)):
        if (a[:1] != b[:1]) if display else (a != b):
            return f'first difference at class {i}: {a} vs {b}'
    return None


def check_same_classes(found: ClassList,
                       expected: ClassList,
                       found_label: str = 'checkpoint',
                       expected_label: str = 'config',
                       subject: Optional[str] = None,
                       fix: str = 'Use the config of the dataset the checkpoint was trained on '
                       '(same class_names, same order), or a checkpoint trained for these classes.',
                       names: bool = True,
                       owner: Optional[str] = None) -> None:
    """The one class-set comparison: raise :class:`ClassSetMismatchError` unless ``found``
    has the classes of ``expected`` (same count, same order and names).

    Used for checkpoints against configs (:func:`check_class_set`), a distillation
    teacher against its student, a dataset against the model (the class-check hook)
    and a trained model against the classes asked for (``tools/infer.py``).

    Args:
        found, expected: class lists: synonym lists, or one display name per class
            (then compared with the first name of each synonym list).
        found_label, expected_label (str): what each list belongs to (message).
        subject (str, optional): the message's opening (default ``'The <found_label>
            has'``), followed by ``' other classes than the <expected_label>'``.
        fix (str): how to fix it (the message's last line).
        names (bool): compare names; ``False``: only the class counts (a dataset's
            display names need not be the prompt words).
        owner (str, optional): the module concerned (e.g. ``'decode_head'``), named in
            the message.
    """
    display = any(all(isinstance(c, str) for c in classes) for classes in (found, expected))
    found_n, expected_n = _synonyms(found), _synonyms(expected)
    where = _first_difference(found_n, expected_n, names, display)
    if where is None:
        return
    where = f'{owner}; {where}' if owner else where
    width = max(len(found_label), len(expected_label)) + 1
    subject = subject or f'The {found_label} has'
    raise ClassSetMismatchError(f'{subject} other classes than the {expected_label} ({where}).\n'
                                f'  {found_label + ":":<{width}} {_short(found_n)}\n'
                                f'  {expected_label + ":":<{width}} {_short(expected_n)}\n{fix}')


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
    check_same_classes(
        stored['class_names'], class_names, subject='The checkpoint was trained for', owner=owner)
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
