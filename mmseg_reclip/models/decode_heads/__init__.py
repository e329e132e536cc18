from .bias_extractor import ReferenceBiasExtractor, bias_logits
from .mask_decoder import RectifiedMaskDecoder
from .maskclip_head import MaskCLIPHead
from .reclip_head import ReCLIPHead
from .reclip_student_head import ReCLIPStudentHead
from .rectified_classifier import RectifiedClassifier, rectify

__all__ = [
    'MaskCLIPHead', 'ReCLIPHead', 'ReCLIPStudentHead', 'RectifiedClassifier',
    'ReferenceBiasExtractor', 'RectifiedMaskDecoder', 'bias_logits', 'rectify'
]
