"""Class-name lists used to build the text queries (docs/method.md §2, §9).

Each list is in the label order of the corresponding dataset (the order of the
mmseg dataset class, after ``reduce_zero_label`` where it applies). An entry is
either a str or a list of synonyms; the first name is always the dataset's own
(readable) class name, and the class score is the max over its names (docs/method.md §2).
Synonyms are used sparingly, only where the dataset's name is an unusual word.
"""
import os.path as osp
from typing import Dict, List, Sequence, Tuple, Union

__all__ = [
    'CLASS_NAMES', 'IMPLICIT_BACKGROUND', 'get_class_names', 'read_class_file', 'is_name_file',
    'refuse_duplicate_names'
]

ClassEntry = Union[str, List[str]]

#: PASCAL VOC 2012 without background, names of docs/method.md §9 (VOC order).
VOC20: List[ClassEntry] = [
    'airplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
    'dining table', 'dog', 'horse', 'motorbike', 'person', 'potted plant', 'sheep', 'sofa', 'train',
    'tv monitor'
]

#: PASCAL Context 59, in mmseg's ``PascalContextDataset59`` order.
CONTEXT59: List[ClassEntry] = [
    'aeroplane', 'bag', 'bed', 'bedclothes', 'bench', 'bicycle', 'bird', 'boat', 'book', 'bottle',
    'building', 'bus', 'cabinet', 'car', 'cat', 'ceiling', 'chair', 'cloth', 'computer', 'cow',
    'cup', 'curtain', 'dog', 'door', 'fence', 'floor', 'flower', 'food', 'grass', 'ground', 'horse',
    'keyboard', 'light', 'motorbike', 'mountain', 'mouse', 'person', 'plate', 'platform',
    'potted plant', 'road', 'rock', 'sheep', 'shelves', 'sidewalk', 'sign', 'sky', 'snow', 'sofa',
    'table', 'track', 'train', 'tree', 'truck', 'tv monitor', 'wall', 'water', 'window', 'wood'
]

#: ADE20K 150, in mmseg's ``ADE20KDataset`` order.
ADE150: List[ClassEntry] = [
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling',
    'road', 'bed', ['windowpane', 'window'], 'grass', 'cabinet', 'sidewalk', 'person',
    ['earth', 'ground'], 'door', 'table', 'mountain', 'plant', 'curtain', 'chair', 'car', 'water',
    'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field', 'armchair', 'seat',
    'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub', 'railing', 'cushion', 'base', 'box',
    'column', 'signboard', 'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper', 'fireplace',
    'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case', 'pool table', 'pillow',
    'screen door', 'stairway', 'river', 'bridge', 'bookcase', 'blind', 'coffee table', 'toilet',
    'flower', 'book', 'hill', 'bench', 'countertop', 'stove',
    'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar', 'arcade machine',
    ['hovel', 'hut'
     ], 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier', 'awning', 'streetlight', 'booth',
    ['television receiver', 'television'], 'airplane', 'dirt track', 'apparel', 'pole', 'land',
    'bannister', 'escalator', 'ottoman', 'bottle', 'buffet',
    'poster', 'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer',
    ['plaything', 'toy'], 'swimming pool', 'stool', 'barrel', 'basket', 'waterfall',
    'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank',
    ['trade name', 'logo'], 'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen',
    'blanket', 'sculpture', 'hood', 'sconce', 'vase', 'traffic light', 'tray',
    ['ashcan', 'trash can'], 'fan', 'pier', 'crt screen', 'plate', 'monitor', 'bulletin board',
    'shower', 'radiator', 'glass', 'clock', 'flag'
]

#: Cityscapes 19 trainId classes, in mmseg's ``CityscapesDataset`` order.
CITYSCAPES19: List[ClassEntry] = [
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
    'bicycle'
]

#: COCO-Stuff 27 mid-level classes (STEGO / PiCIE order, docs/method.md §9):
#: 12 thing supercategories then 15 stuff supercategories.
COCOSTUFF27: List[ClassEntry] = [
    'electronic', 'appliance', 'food things', 'furniture things', 'indoor', 'kitchen', 'accessory',
    'animal', 'outdoor', 'person', 'sports', 'vehicle', 'ceiling', 'floor', 'food stuff',
    'furniture stuff', 'raw material', 'textile', 'wall', 'window', 'building', 'ground', 'plant',
    'sky', 'solid', 'structural', 'water'
]

#: Registry of the built-in lists, keyed by the ``class_names`` config value.
CLASS_NAMES: Dict[str, List[ClassEntry]] = {
    'voc20': VOC20,
    'context59': CONTEXT59,
    'ade150': ADE150,
    'cityscapes19': CITYSCAPES19,
    'cocostuff27': COCOSTUFF27,
}

#: The class added after a one-class list (docs/own_data.md, "One class"): a model of one
#: class predicts it against "not that class". mmseg reads one output channel as binary
#: segmentation (a sigmoid and a threshold), and a softmax over one class has no
#: gradient, so one class alone cannot be trained or predicted.
IMPLICIT_BACKGROUND: List[str] = ['background']


def is_name_file(value: str) -> bool:
    """Whether a ``class_names`` / ``templates`` str names a file rather than a key:
    an existing file, or a path ending in ``.txt`` (so a missing one is reported as a
    missing file, not as an unknown key)."""
    return osp.isfile(value) or value.lower().endswith('.txt')


def _read_lines(path: str, what: str) -> List[str]:
    """Non-blank lines of a text file with ``#`` comments (to the end of the line)
    removed and surrounding whitespace stripped."""
    return [line for _, line in read_numbered_lines(path, what)]


def read_numbered_lines(path: str, what: str) -> List[Tuple[int, str]]:
    """``(line number from 1, text)`` of the entries of a text file, as
    :func:`_read_lines` reads them (so errors can name the line)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} file not found: {osp.abspath(path)!r}')
    try:
        with open(path, encoding='utf-8-sig') as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise ValueError(f'{what} file {path!r} is not UTF-8 text ({err}); save it as '
                         'UTF-8, one entry per line') from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split('#', 1)[0].strip()
        if line:
            lines.append((number, line))
    if not lines:
        raise ValueError(f'{what} file {path!r} has no entries (only blank lines or '
                         "'#' comments); write one entry per line")
    return lines


def read_class_file(path: str) -> List[List[str]]:
    """Read a class-name file: one class per line, synonyms separated by commas.

    Format (the same as SCLIP/NACLIP ``name_path`` files)::

        # my classes            <- comments and blank lines are ignored
        cat
        person, people, human   <- one class, scored as the max over its names
        sky

    Args:
        path (str): a UTF-8 text file.

    Returns:
        List[List[str]]: one list of names per class, in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no class in the file, an empty synonym (``'cat,,dog'``) or a
            class name given twice (names are compared case-insensitively).
    """
    classes: List[List[str]] = []
    for i, line in enumerate(_read_lines(path, 'class-name')):
        names = [n.strip() for n in line.split(',')]
        if not all(names):
            raise ValueError(f'class-name file {path!r}, class {i} ({line!r}): empty '
                             'name between commas; separate synonyms by single commas')
        classes.append(names)
    refuse_duplicate_names(classes, f'class-name file {path!r}')
    return classes


def refuse_duplicate_names(classes: Sequence[Sequence[str]], source: str) -> None:
    """Raise ValueError naming ``source`` if a name (case- and space-insensitive)
    belongs to two classes or twice to one."""
    seen: Dict[str, int] = {}
    for i, names in enumerate(classes):
        for name in names:
            key = ' '.join(name.lower().split())
            if key in seen:
                raise ValueError(f'{source}: {name!r} appears twice (classes {seen[key]} '
                                 f'and {i}); each name may name one class only')
            seen[key] = i


def get_class_names(
        key_or_list: Union[str, Sequence[Union[str, Sequence[str]]]]) -> List[List[str]]:
    """Normalise class names to a list of synonym lists.

    Args:
        key_or_list (str | Sequence[str | Sequence[str]]): a key of
            :data:`CLASS_NAMES` (``'voc20'``, ``'context59'``, ``'ade150'``,
            ``'cityscapes19'``, ``'cocostuff27'``), the path of a class-name file
            (:func:`read_class_file`; an existing file or a ``.txt`` path), or an
            explicit list whose
            entries are class names (str) or lists of synonyms.

    Returns:
        List[List[str]]: one non-empty list of names per class (new lists, safe
        to mutate); names are stripped of surrounding whitespace. A list of one
        class gets a second one, :data:`IMPLICIT_BACKGROUND` (see
        :func:`with_implicit_background`).

    Raises:
        ValueError: unknown key, empty class list, a class without names, an
            empty / blank name, or a name given twice (case-insensitive: CLIP's
            tokenizer lower-cases, so two entries would be the same query).
        TypeError: an entry that is neither a str nor a sequence of str.
    """
    if isinstance(key_or_list, str) and key_or_list not in CLASS_NAMES \
            and is_name_file(key_or_list):
        key_or_list = read_class_file(key_or_list)
    if isinstance(key_or_list, str):
        if key_or_list not in CLASS_NAMES:
            raise ValueError(
                f'Unknown class-name key {key_or_list!r}, and there is no file '
                f'{osp.abspath(key_or_list)!r}: give the path of your class-name file (one '
                f'class per line; e.g. CLASS_NAMES=my_classes.txt) or a built-in key: '
                f'{sorted(CLASS_NAMES)}')
        entries = CLASS_NAMES[key_or_list]
    else:
        try:
            entries = list(key_or_list)
        except TypeError:
            raise TypeError('class names must be a str key or a list, got '
                            f'{type(key_or_list).__name__}') from None
    if len(entries) == 0:
        raise ValueError('class-name list is empty')
    out: List[List[str]] = []
    seen: Dict[str, int] = {}
    for i, entry in enumerate(entries):
        names = [entry] if isinstance(entry, str) else entry
        try:
            names = list(names)
        except TypeError:
            raise TypeError(f'class {i}: entry must be a str or a list of '
                            f'str, got {type(entry).__name__}') from None
        if not names:
            raise ValueError(f'class {i} has no names')
        clean = []
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f'class {i}: name must be str, got '
                                f'{type(name).__name__}')
            if not name.strip():
                raise ValueError(f'class {i}: empty class name')
            key = name.strip().casefold()
            if key in seen:
                where = 'twice in class' if seen[key] == i else f'in classes {seen[key]} and'
                raise ValueError(
                    f'Duplicate class name {name.strip()!r} ({where} {i}): every name must '
                    'be unique, otherwise two classes get the same query and the argmax '
                    'between them is arbitrary. Remove or rename the duplicate.')
            seen[key] = i
            clean.append(name.strip())
        out.append(clean)
    if len(out) == 1:
        return with_implicit_background(out)
    return out


def with_implicit_background(classes: List[List[str]]) -> List[List[str]]:
    """One class ``C`` -> ``[C, IMPLICIT_BACKGROUND]``: each pixel is predicted as ``C``
    where ``C`` scores above "background", else as background (index 1).

    Raises:
        ValueError: the one class is itself named "background".
    """
    background = {n.casefold() for n in IMPLICIT_BACKGROUND}
    clash = [n for n in classes[0] if n.casefold() in background]
    if clash:
        raise ValueError(
            f'One class {classes[0]} is predicted against an implicit class '
            f'{IMPLICIT_BACKGROUND}, and {clash[0]!r} is that class: give at least two '
            "classes (e.g. 'person,background'), or the class you want to find.")
    return classes + [list(IMPLICIT_BACKGROUND)]
