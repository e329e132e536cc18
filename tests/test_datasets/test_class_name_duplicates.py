"""Duplicate class names are refused, naming the duplicate (two equal queries would make
the argmax between their classes arbitrary)."""
import pytest

from mmseg_reclip.datasets.class_names import CLASS_NAMES, get_class_names
from mmseg_reclip.models.decode_heads.maskclip_head import normalize_class_names


@pytest.mark.parametrize(
    'names,dup,where',
    [
        (['cat', 'dog', 'cat'], "'cat'", 'in classes 0 and 2'),
        (['dog', ['kitty', 'cat'], ' cat '], "'cat'", 'in classes 1 and 2'),
        ([['tv', 'TV']], "'TV'", 'twice in class 0'),  # CLIP's tokenizer lower-cases
    ])
def test_duplicate_names_are_refused(names, dup, where):
    with pytest.raises(ValueError) as err:
        get_class_names(names)
    msg = str(err.value)
    assert f'Duplicate class name {dup} ({where}' in msg and '\n' not in msg
    with pytest.raises(ValueError, match='Duplicate class name'):
        normalize_class_names(names)  # the heads' route


def test_builtin_lists_have_no_duplicates():
    for key in CLASS_NAMES:
        assert len(get_class_names(key)) == len(CLASS_NAMES[key])


def test_distinct_names_still_accepted():
    assert get_class_names(['cat', ['dog', 'puppy'], 'cats']) == [['cat'], ['dog', 'puppy'],
                                                                  ['cats']]
