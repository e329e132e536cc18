from .maskclip_head import MaskCLIPHead
from .reclip_head import ReCLIPHead, bias_logits, hypothesis_multi_hot, rectify

__all__ = ['MaskCLIPHead', 'ReCLIPHead', 'bias_logits', 'rectify', 'hypothesis_multi_hot']
from .reclip_student_head import ReCLIPStudentHead  # noqa: F401,E402
