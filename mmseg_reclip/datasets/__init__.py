from .transforms import *  # noqa: F401,F403
from .class_names import CLASS_NAMES, get_class_names  # noqa: F401
from .coco_stuff27 import (COCOSTUFF27_CLASSES, COCOSTUFF27_PALETTE,  # noqa
                           COCOSTUFF27_SEG_MAP_SUFFIX,
                           COCOSTUFF_FINE_TO_COARSE27, COCOStuff27Dataset,
                           convert_labels)
from .templates import (IMAGENET_TEMPLATES, SCENE_TEMPLATES,  # noqa: F401
                        TEMPLATE_SETS, get_templates)
from .voc20 import PascalVOC20Dataset  # noqa: F401
from .unlabeled import IMAGE_EXTENSIONS, UnlabeledImageDataset, list_images  # noqa: F401
from .labelled_folder import LabelledImageFolderDataset  # noqa: F401
