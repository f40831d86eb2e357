"""Test-time views of a cell: a cell has no canonical orientation, so the 8 flips and 90° rotations (the dihedral group
of the square) are equally valid views of it.

    views = dihedral_views(pixels)      # 8 tensors shaped like ``pixels`` (…×H×W), the identity first
"""

from __future__ import annotations

import torch

N_VIEWS = 8


def dihedral_views(pixels: torch.Tensor) -> list[torch.Tensor]:
    """The 4 rotations of ``pixels`` and of its mirror image, over the last two dimensions; the identity first."""
    return [torch.rot90(v, k, dims=(-2, -1)).contiguous() for v in (pixels, pixels.flip(-1)) for k in range(4)]
