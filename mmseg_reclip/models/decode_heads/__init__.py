from .bias_extractor import ReferenceBiasExtractor, bias_logits, normalize_reference
from .mask_decoder import RectifiedMaskDecoder
from .maskclip_head import MaskCLIPHead
from .reclip_head import ReCLIPHead, hypothesis_multi_hot, rectify
from .reclip_student_head import ReCLIPStudentHead

__all__ = [
    'MaskCLIPHead', 'ReCLIPHead', 'ReCLIPStudentHead', 'ReferenceBiasExtractor',
    'RectifiedMaskDecoder', 'bias_logits', 'normalize_reference', 'rectify', 'hypothesis_multi_hot'
]
