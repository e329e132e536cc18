"""Helpers of the untrusted-file tests: a pickle payload whose unpickling leaves a marker
file (code ran iff it appears)."""
import torch


class Payload:
    """Unpickling it calls ``open(marker, 'w')``: the file appears iff code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def write_payload(path, marker, **content) -> str:
    torch.save(dict(content, payload=Payload(str(marker))), str(path))
    return str(path)
