from .maskclip import MaskCLIP, logits_to_input_size, prompt_denoise

__all__ = ['MaskCLIP', 'prompt_denoise', 'logits_to_input_size']
