from .checked import CheckedADE20KDataset, CheckedCityscapesDataset, CheckedPascalContextDataset59
from .class_names import CLASS_NAMES, get_class_names, read_class_file
from .coco_stuff27 import (COCOSTUFF27_CLASSES, COCOSTUFF27_PALETTE, COCOSTUFF27_SEG_MAP_SUFFIX,
                           COCOSTUFF_FINE_TO_COARSE27, COCOStuff27Dataset, convert_labels)
from .labelled_folder import LabelledImageFolderDataset
from .templates import (IMAGENET_TEMPLATES, SCENE_TEMPLATES, TEMPLATE_SETS, get_templates,
                        read_template_file)
from .transforms import *  # noqa: F401,F403
from .unlabeled import IMAGE_EXTENSIONS, UnlabeledImageDataset
from .voc20 import PascalVOC20Dataset

__all__ = [
    'CheckedADE20KDataset', 'CheckedCityscapesDataset', 'CheckedPascalContextDataset59',
    'CLASS_NAMES', 'get_class_names', 'read_class_file', 'COCOSTUFF27_CLASSES',
    'COCOSTUFF27_PALETTE', 'COCOSTUFF27_SEG_MAP_SUFFIX', 'COCOSTUFF_FINE_TO_COARSE27',
    'COCOStuff27Dataset', 'convert_labels', 'LabelledImageFolderDataset', 'IMAGENET_TEMPLATES',
    'SCENE_TEMPLATES', 'TEMPLATE_SETS', 'get_templates', 'read_template_file', 'IMAGE_EXTENSIONS',
    'UnlabeledImageDataset', 'PascalVOC20Dataset'
]
