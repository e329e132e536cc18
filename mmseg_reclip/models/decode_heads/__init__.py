from .bias_extractor import ReferenceBiasExtractor, bias_logits
from .coupled_bias_extractor import CoupledBiasExtractor, coupled_bias_logits
from .learnable_query_head import LearnableQueryReCLIPHead
from .linear_probe_head import LinearProbeHead
from .mask_decoder import RectifiedMaskDecoder
from .maskclip_head import MaskCLIPHead
from .no_mask_decoder import NoMaskDecoder
from .reclip_head import ReCLIPHead
from .reclip_student_head import ReCLIPStudentHead
from .rectified_classifier import RectifiedClassifier, rectify

__all__ = [
    'MaskCLIPHead', 'ReCLIPHead', 'ReCLIPStudentHead', 'RectifiedClassifier',
    'ReferenceBiasExtractor', 'RectifiedMaskDecoder', 'bias_logits', 'rectify',
    'CoupledBiasExtractor', 'coupled_bias_logits', 'NoMaskDecoder', 'LearnableQueryReCLIPHead',
    'LinearProbeHead'
]
