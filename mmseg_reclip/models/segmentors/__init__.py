from .maskclip import MaskCLIP, logits_to_input_size
from .prompt_denoise import PD_MODES, PromptDenoiseMixin, prompt_denoise
from .reclip import ReCLIP

__all__ = [
    'MaskCLIP', 'ReCLIP', 'PromptDenoiseMixin', 'PD_MODES', 'prompt_denoise', 'logits_to_input_size'
]
from .distiller import ReCLIPDistiller  # noqa: F401,E402
from .linear_probe import LinearProbeSegmentor  # noqa: F401,E402
