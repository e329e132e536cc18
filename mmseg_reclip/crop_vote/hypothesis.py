"""The crop-vote hypothesis of a batch as a multi-hot tensor (read by both ReCLIP heads)."""
import torch
from mmseg.utils import SampleList

__all__ = ['hypothesis_multi_hot']


def hypothesis_multi_hot(data_samples: SampleList, num_classes: int,
                         device: torch.device) -> torch.Tensor:
    """``[B, C]`` bool from each sample's ``metainfo['hypothesis']`` (class indices).

    The hypothesis is set by the crop-vote hook from CLIP alone (docs/method.md §5); no
    ground truth is read.
    """
    # Built on the host and moved once: no per-sample device copies in the step.
    out = torch.zeros(len(data_samples), num_classes, dtype=torch.bool)
    for i, sample in enumerate(data_samples):
        if 'hypothesis' not in sample.metainfo:
            raise KeyError(
                'A training sample carries no crop-vote hypothesis. Add '
                "dict(type='CropVoteHypothesisHook') to custom_hooks (the ReCLIP configs do).")
        out[i, torch.as_tensor(list(sample.metainfo['hypothesis']), dtype=torch.long)] = True
    return out.to(device)
