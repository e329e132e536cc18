from .clip_text import OpenCLIPTextEncoder, encode_shared_prefix

__all__ = ['OpenCLIPTextEncoder', 'encode_shared_prefix']
