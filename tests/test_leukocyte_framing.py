import numpy as np
import pytest
from PIL import Image

from neunn.data.leukocyte_framing import border_colour, find_leukocyte, frame_leukocyte, rescale_frame, square_crop
from neunn.data.preprocess import central_crop
from neunn.errors import NeunnError

BACKGROUND = (250, 232, 205)  # PBC's cream
RED_CELL = (225, 170, 175)  # pink, pale: passes red light
NUCLEUS = (85, 40, 140)  # May-Grünwald-Giemsa purple: absorbs red


def _smear(size=(200, 180), cell=(95, 84), radius=24):
    """A cream field with pink red cells around and one purple cell, as an RGB array (height, width, 3)."""
    height, width = size
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[...] = BACKGROUND
    yy, xx = np.mgrid[:height, :width]
    for cx, cy in [(20, 20), (170, 30), (30, 160), (160, 170), (20, 95)]:
        rgb[(xx - cx) ** 2 + (yy - cy) ** 2 <= 16 ** 2] = RED_CELL
    rgb[(xx - cell[0]) ** 2 + (yy - cell[1]) ** 2 <= radius ** 2] = NUCLEUS
    return rgb


def test_find_leukocyte_gives_the_purple_cells_centre_and_diameter():
    cell = find_leukocyte(_smear())
    assert cell.found
    assert abs(cell.x - 95) < 1.5 and abs(cell.y - 84) < 1.5
    assert cell.diameter == pytest.approx(48, rel=0.08)


def test_find_leukocyte_works_on_large_images_through_its_reduced_copy():
    big = np.asarray(Image.fromarray(_smear()).resize((720, 800), Image.Resampling.NEAREST))
    cell = find_leukocyte(big)
    assert abs(cell.x - 95 * 4) < 6 and abs(cell.y - 84 * 4) < 6
    assert cell.diameter == pytest.approx(48 * 4, rel=0.08)


def test_a_crop_without_a_stained_cell_is_not_found_and_framed_unchanged():
    blank = np.full((64, 80, 3), 200, dtype=np.uint8)
    cell = find_leukocyte(blank)
    assert not cell.found and cell.diameter == 80
    image = Image.fromarray(blank)
    assert frame_leukocyte(image, 0.5) is image


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.8])
def test_frame_leukocyte_centres_the_cell_at_the_asked_share_of_the_frame(fraction):
    framed = frame_leukocyte(Image.fromarray(_smear()), fraction)
    assert framed.width == framed.height == round(find_leukocyte(_smear()).diameter / fraction)
    again = find_leukocyte(np.asarray(framed))
    centre = (framed.width - 1) / 2
    assert abs(again.x - centre) < 1.5 and abs(again.y - centre) < 1.5
    assert again.diameter / framed.width == pytest.approx(fraction, rel=0.08)


def test_a_frame_past_the_edge_is_filled_with_the_border_colour_or_mirrored():
    rgb = _smear()
    framed = np.asarray(frame_leukocyte(Image.fromarray(rgb), 0.15))  # 320 px: wider than the 180 px image
    assert framed.shape[0] > rgb.shape[1]
    assert tuple(framed[0, 0]) == tuple(border_colour(rgb)) == BACKGROUND
    mirrored = square_crop(rgb, 89.5, 99.5, 220, fill="reflect")
    assert np.array_equal(mirrored[10:210, 19], rgb[:, 0]) and np.array_equal(mirrored[10:210, 18], rgb[:, 0])
    with pytest.raises(NeunnError):
        square_crop(rgb, 0, 0, 10, fill="zeros")
    with pytest.raises(NeunnError):
        frame_leukocyte(Image.fromarray(rgb), 0.0)


def test_rescale_frame_pads_or_crops_about_the_centre():
    rgb = _smear(size=(100, 100), cell=(50, 50), radius=10)
    image = Image.fromarray(rgb)
    wider = np.asarray(rescale_frame(image, 2.0))
    assert wider.shape == (200, 200, 3)
    assert np.array_equal(wider[50:150, 50:150], rgb)
    assert tuple(wider[0, 0]) == BACKGROUND
    assert np.array_equal(np.asarray(rescale_frame(image, 0.5)), np.asarray(central_crop(image, 0.5)))
    with pytest.raises(NeunnError):
        rescale_frame(image, 0)
