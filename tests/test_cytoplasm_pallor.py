"""The cytoplasm's pallor: bounded, blind to how strongly a cell is stained, and raised by vacuoles painted into it."""

from __future__ import annotations

import numpy as np
from conftest import phantom_neutrophils

from neunn.data.cytoplasm_pallor import cytoplasm_pallor
from neunn.data.vacuole_painting import paint_vacuoles


def test_pallor_rises_when_vacuoles_are_painted_in(neutrophil_crops):
    rises = []
    for seed, rgb in enumerate(neutrophil_crops):
        before = cytoplasm_pallor(rgb)
        painted = [cytoplasm_pallor(paint_vacuoles(rgb, np.random.default_rng([seed, k]))) for k in range(3)]
        assert 0.0 <= before <= 1.0 and all(0.0 <= p <= 1.0 for p in painted)
        rises.append(np.mean(painted) - before)
    # A cell whose cytoplasm is already pale has little room to rise (measured: 0.81 before, 0.81 after): the rise is
    # asked of most cells and of their mean, not of each.
    assert np.mean(rises) > 0.02 and np.mean(np.array(rises) > 0.01) >= 0.6, rises


def test_pallor_of_a_flat_image_is_zero_and_does_not_depend_on_stain_strength():
    assert cytoplasm_pallor(np.full((120, 120, 3), 200, dtype=np.uint8)) == 0.0
    rgb = phantom_neutrophils(1)[0]
    light = np.percentile(rgb.reshape(-1, 3), 99.0, axis=0)
    od = -np.log(np.maximum(rgb.astype(float), 1.0) / light)
    weaker = np.clip(np.rint(light * np.exp(-0.8 * od)), 0, 255).astype(np.uint8)  # the same cell, 20 % less stain
    assert abs(cytoplasm_pallor(weaker) - cytoplasm_pallor(rgb)) < 0.05
