"""Random-weight open_clip models saved to local files, for the `pretrained=<path>` route."""
import os.path as osp

import open_clip
import torch

import mmseg_reclip  # noqa: F401  (registers the tiny test model config)
from mmseg_reclip.models.utils import register_model_configs

TINY = 'ViT-Tiny-16-test'


def save_random_clip(path: str, model_name: str = TINY, seed: int = 0) -> str:
    """Create a randomly initialised open_clip model and save its state dict to ``path``.

    Random init leaves some tensors (e.g. the visual projection) at default scales; a
    seeded re-draw of every parameter makes the features non-degenerate.
    """
    register_model_configs()
    if osp.exists(path):
        return path
    torch.manual_seed(seed)
    model = open_clip.create_model(model_name, pretrained=None)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0, p.shape[-1]**-0.5)
            elif 'weight' in name:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 0.02)
    torch.save(model.state_dict(), path)
    return path


def tiny_clip_options(clip_path: str, head: str = 'decode_head') -> list:
    """``--cfg-options`` that put the tiny random CLIP (saved at ``clip_path``) in a config."""
    return [
        'model.backbone.model_name=' + TINY,
        'model.backbone.pretrained=' + clip_path,
        f'model.{head}.text_encoder.model_name=' + TINY,
        f'model.{head}.text_encoder.pretrained=' + clip_path,
        f'model.{head}.in_channels=64',
        f'model.{head}.templates=single',
    ]


def small_data_options(data_root: str, splits=('train', 'val', 'test')) -> list:
    """``--cfg-options`` pointing dataloaders at ``data_root`` with no worker processes."""
    opts = []
    for split in splits:
        # the train dataset is wrapped by StepSeededDataset (configs/_base_/datasets)
        dataset = 'dataset.dataset' if split == 'train' else 'dataset'
        opts += [
            f'{split}_dataloader.{dataset}.data_root=' + data_root,
            f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.persistent_workers=False',
        ]
    return opts


#: Tiny test architectures of other patch sizes (model_configs/): D, image width, input
#: size and text width all differ, so a swapped or hard-coded dimension fails.
TINY14 = 'ViT-Tiny-14-test'
TINY32 = 'ViT-Tiny-32-test'


def one_switch_options(model_name: str, clip_path: str, prefix: str = 'model.') -> list:
    """``--cfg-options`` that change only the CLIP (``model.clip``) and keep runs short
    (one template, no query disk cache, BN): every dimension must follow from the CLIP."""
    head = prefix + 'decode_head.'
    return [
        'model.clip.model_name=' + model_name,
        'model.clip.pretrained=' + clip_path,
        head + 'templates=single',
        head + 'query_cache_dir=None',
    ]
