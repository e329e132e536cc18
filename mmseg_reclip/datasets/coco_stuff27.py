"""COCO-Stuff-27: the 27 mid-level classes of the unsupervised protocol.

Layout (same as mmseg's ``COCOStuffDataset`` for COCO-Stuff-164k)::

    data/coco_stuff164k/
        images/train2017/*.jpg
        images/val2017/*.jpg
        annotations/train2017/*.png                      # raw stuffthingmaps
        annotations/train2017/*_labelTrainIds27.png      # written by converter
        annotations/val2017/*.png
        annotations/val2017/*_labelTrainIds27.png

The raw label PNGs of ``stuffthingmaps_trainval2017.zip`` hold 0-based
COCO-Stuff ids 0..181 (= COCO category id - 1; 171 of them are used) and 255
for unlabeled. ``tools/dataset_converters/coco_stuff27.py`` maps them with
:func:`convert_labels` to 0..26 (255 = ignore) and writes
``<name>_labelTrainIds27.png`` next to each raw map.
"""
from typing import Dict

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .checks import CheckedDatasetMixin

__all__ = [
    'COCOStuff27Dataset', 'COCOSTUFF27_CLASSES', 'COCOSTUFF27_PALETTE',
    'COCOSTUFF_FINE_TO_COARSE27', 'COCOSTUFF27_SEG_MAP_SUFFIX', 'convert_labels'
]

#: Suffix of the converted 27-class label maps.
COCOSTUFF27_SEG_MAP_SUFFIX = '_labelTrainIds27.png'

#: Coarse classes: 12 thing supercategories (0..11), then 15 stuff
#: supercategories (12..26), in the STEGO / PiCIE order.
COCOSTUFF27_CLASSES = ('electronic', 'appliance', 'food things', 'furniture things', 'indoor',
                       'kitchen', 'accessory', 'animal', 'outdoor', 'person', 'sports', 'vehicle',
                       'ceiling', 'floor', 'food stuff', 'furniture stuff', 'raw material',
                       'textile', 'wall', 'window', 'building', 'ground', 'plant', 'sky', 'solid',
                       'structural', 'water')

COCOSTUFF27_PALETTE = [[220, 20, 60], [119, 11, 32], [0, 0, 142], [0, 0, 230], [106, 0, 228],
                       [0, 60, 100], [0, 80, 100], [0, 0, 70], [0, 0, 192], [250, 170, 30],
                       [100, 170, 30], [220, 220, 0], [175, 116, 175], [250, 0, 30], [165, 42, 42],
                       [255, 77, 255], [0, 226, 252], [182, 182, 255], [0, 82, 0], [120, 166, 157],
                       [110, 76, 0], [174, 57, 255], [199, 100, 0], [72, 0, 118], [255, 179, 240],
                       [0, 125, 92], [209, 0, 151]]

# Fine (0-based COCO-Stuff-164k label id, i.e. COCO category id - 1) -> coarse
# (index into COCOSTUFF27_CLASSES). Source: the COCO-Stuff category hierarchy
# (COCO "supercategory" of every thing class in the COCO 2017 annotations, and
# the stuff supercategories of cocostuff's stuff_2017 annotations /
# cocostuffhierarchy), as used by the PiCIE / STEGO COCO-Stuff-27 protocol.
# The 11 ids absent from COCO-Stuff-164k (11 street sign, 25 hat, 28 shoe,
# 29 eye glasses, 44 plate, 65 mirror, 67 window, 68 desk, 70 door,
# 82 blender, 90 hair brush) are not listed: they map to 255 (ignore).
COCOSTUFF_FINE_TO_COARSE27: Dict[int, int] = {
    0: 9,  # person -> person
    1: 11,  # bicycle -> vehicle
    2: 11,  # car -> vehicle
    3: 11,  # motorcycle -> vehicle
    4: 11,  # airplane -> vehicle
    5: 11,  # bus -> vehicle
    6: 11,  # train -> vehicle
    7: 11,  # truck -> vehicle
    8: 11,  # boat -> vehicle
    9: 8,  # traffic light -> outdoor
    10: 8,  # fire hydrant -> outdoor
    12: 8,  # stop sign -> outdoor
    13: 8,  # parking meter -> outdoor
    14: 8,  # bench -> outdoor
    15: 7,  # bird -> animal
    16: 7,  # cat -> animal
    17: 7,  # dog -> animal
    18: 7,  # horse -> animal
    19: 7,  # sheep -> animal
    20: 7,  # cow -> animal
    21: 7,  # elephant -> animal
    22: 7,  # bear -> animal
    23: 7,  # zebra -> animal
    24: 7,  # giraffe -> animal
    26: 6,  # backpack -> accessory
    27: 6,  # umbrella -> accessory
    30: 6,  # handbag -> accessory
    31: 6,  # tie -> accessory
    32: 6,  # suitcase -> accessory
    33: 10,  # frisbee -> sports
    34: 10,  # skis -> sports
    35: 10,  # snowboard -> sports
    36: 10,  # sports ball -> sports
    37: 10,  # kite -> sports
    38: 10,  # baseball bat -> sports
    39: 10,  # baseball glove -> sports
    40: 10,  # skateboard -> sports
    41: 10,  # surfboard -> sports
    42: 10,  # tennis racket -> sports
    43: 5,  # bottle -> kitchen
    45: 5,  # wine glass -> kitchen
    46: 5,  # cup -> kitchen
    47: 5,  # fork -> kitchen
    48: 5,  # knife -> kitchen
    49: 5,  # spoon -> kitchen
    50: 5,  # bowl -> kitchen
    51: 2,  # banana -> food things
    52: 2,  # apple -> food things
    53: 2,  # sandwich -> food things
    54: 2,  # orange -> food things
    55: 2,  # broccoli -> food things
    56: 2,  # carrot -> food things
    57: 2,  # hot dog -> food things
    58: 2,  # pizza -> food things
    59: 2,  # donut -> food things
    60: 2,  # cake -> food things
    61: 3,  # chair -> furniture things
    62: 3,  # couch -> furniture things
    63: 3,  # potted plant -> furniture things
    64: 3,  # bed -> furniture things
    66: 3,  # dining table -> furniture things
    69: 3,  # toilet -> furniture things
    71: 0,  # tv -> electronic
    72: 0,  # laptop -> electronic
    73: 0,  # mouse -> electronic
    74: 0,  # remote -> electronic
    75: 0,  # keyboard -> electronic
    76: 0,  # cell phone -> electronic
    77: 1,  # microwave -> appliance
    78: 1,  # oven -> appliance
    79: 1,  # toaster -> appliance
    80: 1,  # sink -> appliance
    81: 1,  # refrigerator -> appliance
    83: 4,  # book -> indoor
    84: 4,  # clock -> indoor
    85: 4,  # vase -> indoor
    86: 4,  # scissors -> indoor
    87: 4,  # teddy bear -> indoor
    88: 4,  # hair drier -> indoor
    89: 4,  # toothbrush -> indoor
    91: 17,  # banner -> textile
    92: 17,  # blanket -> textile
    93: 22,  # branch -> plant
    94: 20,  # bridge -> building
    95: 20,  # building-other -> building
    96: 22,  # bush -> plant
    97: 15,  # cabinet -> furniture stuff
    98: 25,  # cage -> structural
    99: 16,  # cardboard -> raw material
    100: 13,  # carpet -> floor
    101: 12,  # ceiling-other -> ceiling
    102: 12,  # ceiling-tile -> ceiling
    103: 17,  # cloth -> textile
    104: 17,  # clothes -> textile
    105: 23,  # clouds -> sky
    106: 15,  # counter -> furniture stuff
    107: 15,  # cupboard -> furniture stuff
    108: 17,  # curtain -> textile
    109: 15,  # desk-stuff -> furniture stuff
    110: 21,  # dirt -> ground
    111: 15,  # door-stuff -> furniture stuff
    112: 25,  # fence -> structural
    113: 13,  # floor-marble -> floor
    114: 13,  # floor-other -> floor
    115: 13,  # floor-stone -> floor
    116: 13,  # floor-tile -> floor
    117: 13,  # floor-wood -> floor
    118: 22,  # flower -> plant
    119: 26,  # fog -> water
    120: 14,  # food-other -> food stuff
    121: 14,  # fruit -> food stuff
    122: 15,  # furniture-other -> furniture stuff
    123: 22,  # grass -> plant
    124: 21,  # gravel -> ground
    125: 21,  # ground-other -> ground
    126: 24,  # hill -> solid
    127: 20,  # house -> building
    128: 22,  # leaves -> plant
    129: 15,  # light -> furniture stuff
    130: 17,  # mat -> textile
    131: 16,  # metal -> raw material
    132: 15,  # mirror-stuff -> furniture stuff
    133: 22,  # moss -> plant
    134: 24,  # mountain -> solid
    135: 21,  # mud -> ground
    136: 17,  # napkin -> textile
    137: 25,  # net -> structural
    138: 16,  # paper -> raw material
    139: 21,  # pavement -> ground
    140: 17,  # pillow -> textile
    141: 22,  # plant-other -> plant
    142: 16,  # plastic -> raw material
    143: 21,  # platform -> ground
    144: 21,  # playingfield -> ground
    145: 25,  # railing -> structural
    146: 21,  # railroad -> ground
    147: 26,  # river -> water
    148: 21,  # road -> ground
    149: 24,  # rock -> solid
    150: 20,  # roof -> building
    151: 17,  # rug -> textile
    152: 14,  # salad -> food stuff
    153: 21,  # sand -> ground
    154: 26,  # sea -> water
    155: 15,  # shelf -> furniture stuff
    156: 23,  # sky-other -> sky
    157: 20,  # skyscraper -> building
    158: 21,  # snow -> ground
    159: 24,  # solid-other -> solid
    160: 15,  # stairs -> furniture stuff
    161: 24,  # stone -> solid
    162: 22,  # straw -> plant
    163: 25,  # structural-other -> structural
    164: 15,  # table -> furniture stuff
    165: 20,  # tent -> building
    166: 17,  # textile-other -> textile
    167: 17,  # towel -> textile
    168: 22,  # tree -> plant
    169: 14,  # vegetable -> food stuff
    170: 18,  # wall-brick -> wall
    171: 18,  # wall-concrete -> wall
    172: 18,  # wall-other -> wall
    173: 18,  # wall-panel -> wall
    174: 18,  # wall-stone -> wall
    175: 18,  # wall-tile -> wall
    176: 18,  # wall-wood -> wall
    177: 26,  # water-other -> water
    178: 26,  # waterdrops -> water
    179: 19,  # window-blind -> window
    180: 19,  # window-other -> window
    181: 24,  # wood -> solid
}

_LUT = np.full(256, 255, dtype=np.uint8)
for _fine, _coarse in COCOSTUFF_FINE_TO_COARSE27.items():
    _LUT[_fine] = _coarse
_LUT.setflags(write=False)


def convert_labels(label: np.ndarray) -> np.ndarray:
    """Map a COCO-Stuff-164k fine label map to COCO-Stuff-27.

    Args:
        label (np.ndarray): integer label map of any shape with 0-based
            COCO-Stuff ids (0..181); 255 means unlabeled.

    Returns:
        np.ndarray: uint8 array of the same shape with values 0..26, and 255
        for unlabeled pixels, ids unused by COCO-Stuff and any out-of-range
        value.
    """
    label = np.asarray(label)
    if not np.issubdtype(label.dtype, np.integer):
        raise TypeError(f'label must be an integer array, got {label.dtype}')
    if label.dtype == np.uint8:
        return _LUT[label]
    out = np.full(label.shape, 255, dtype=np.uint8)
    valid = (label >= 0) & (label < 256)
    out[valid] = _LUT[label[valid]]
    return out


@DATASETS.register_module()
class COCOStuff27Dataset(CheckedDatasetMixin, BaseSegDataset):
    """COCO-Stuff-164k with the 27 mid-level classes (STEGO / PiCIE protocol).

    Label maps must already be converted to 0..26 (255 = ignore) with
    ``tools/dataset_converters/coco_stuff27.py``; ``reduce_zero_label`` is
    False.

    Args:
        img_suffix (str): image suffix. Default: ``'.jpg'``.
        seg_map_suffix (str): converted label-map suffix. Default:
            ``'_labelTrainIds27.png'``.
        reduce_zero_label (bool): must stay False for these labels.
        **kwargs: passed to :class:`mmseg.datasets.BaseSegDataset`
            (``data_root``, ``data_prefix``, ``ann_file`` (optional list of
            image basenames, e.g. a curated subset), ``pipeline``, ...).
    """
    METAINFO = dict(classes=COCOSTUFF27_CLASSES, palette=COCOSTUFF27_PALETTE)

    def __init__(self,
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = COCOSTUFF27_SEG_MAP_SUFFIX,
                 reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)
