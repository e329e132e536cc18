from .bias_extractor import ReferenceBiasExtractor, bias_logits, normalize_reference
from .coupled_bias_extractor import CoupledBiasExtractor, coupled_bias_logits
from .learnable_query_head import LearnableQueryReCLIPHead
from .linear_probe_head import LinearProbeHead
from .mask_decoder import RectifiedMaskDecoder
from .maskclip_head import MaskCLIPHead
from .no_mask_decoder import NoMaskDecoder
from .reclip_head import ReCLIPHead, hypothesis_multi_hot, rectify
from .reclip_student_head import ReCLIPStudentHead

__all__ = [
    'MaskCLIPHead', 'ReCLIPHead', 'ReCLIPStudentHead', 'ReferenceBiasExtractor',
    'RectifiedMaskDecoder', 'bias_logits', 'normalize_reference', 'rectify', 'hypothesis_multi_hot',
    'CoupledBiasExtractor', 'coupled_bias_logits', 'NoMaskDecoder', 'LearnableQueryReCLIPHead',
    'LinearProbeHead'
]
