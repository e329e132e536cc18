from .maskclip import MaskCLIP
from .prompt_denoise import PD_MODES, PromptDenoiseMixin, prompt_denoise
from .reclip import ReCLIP

__all__ = ['MaskCLIP', 'ReCLIP', 'PromptDenoiseMixin', 'PD_MODES', 'prompt_denoise']
from .distiller import ReCLIPDistiller  # noqa: F401,E402
from .linear_probe import LinearProbeSegmentor  # noqa: F401,E402
