from .maskclip import MaskCLIP, logits_to_input_size, prompt_denoise
from .reclip import ReCLIP

__all__ = ['MaskCLIP', 'ReCLIP', 'prompt_denoise', 'logits_to_input_size']
from .distiller import ReCLIPDistiller  # noqa: F401,E402
