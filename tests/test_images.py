"""timm_sesk.data.read_image, the one image reader of predict, validate, attention and int8 calibration: images as a
viewer shows them (EXIF orientation, 16-bit and float samples), timm's pixels for everything else, and tiny hostile
files refused in one line before they take gigabytes. Every image is a real file written here."""
import re
import struct
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from helpers import hostile_images, write_png
from PIL import Image, ImageOps

from timm_sesk.data import MAX_ASPECT_RATIO, ImageReadError, read_image

REPO = Path(__file__).resolve().parents[1]
RED, BLUE = (220, 20, 20), (20, 20, 220)


def _pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == 'RGB'
    return np.asarray(image)


def _ramp16(height: int = 8, width: int = 64) -> np.ndarray:
    """16-bit samples over the whole range, from 0 to 65535."""
    return np.linspace(0, 65535, height * width).round().astype(np.uint16).reshape(height, width)


@pytest.mark.parametrize('mode, suffix', [('RGB', 'jpg'), ('RGB', 'png'), ('L', 'png'), ('P', 'png'), ('RGBA', 'png'),
                                          ('LA', 'png'), ('1', 'png'), ('CMYK', 'jpg'), ('RGB', 'tif')])
def test_8_bit_images_without_orientation_read_as_timm_reads_them(tmp_path, mode, suffix):
    rgb = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    path = tmp_path / f'image.{suffix}'
    Image.fromarray(rgb).convert(mode).save(path)
    with Image.open(path) as image:  # timm's ImageDataset
        expected = np.asarray(image.convert('RGB'))
    np.testing.assert_array_equal(_pixels(read_image(path)), expected)


def test_16_bit_png_keeps_the_high_byte_as_pil_reads_a_48_bit_png(tmp_path):
    samples = _ramp16()
    grey = tmp_path / 'grey16.png'
    Image.fromarray(samples).save(grey)
    with Image.open(grey) as image:
        assert image.mode == 'I;16'
        clipped = np.asarray(image.convert('RGB'))[..., 0]  # what convert('RGB') does: clip, nearly all white
        np.testing.assert_array_equal(clipped, np.minimum(samples, 255))
    # PIL cannot write a 48-bit PNG; written by hand, it reads one as 8-bit RGB, each sample's high byte.
    channels = np.stack([samples, 65535 - samples, samples // 3], axis=-1)
    rgb48 = write_png(tmp_path / 'rgb48.png', samples.shape[1], samples.shape[0], 16, 2,
                      (row.astype('>u2').tobytes() for row in channels))
    with Image.open(rgb48) as image:
        assert image.mode == 'RGB'
        np.testing.assert_array_equal(np.asarray(image), channels >> 8)

    np.testing.assert_array_equal(_pixels(read_image(grey)), np.repeat((samples >> 8)[..., None], 3, axis=-1))
    np.testing.assert_array_equal(_pixels(read_image(rgb48)), channels >> 8)
    grey48 = write_png(tmp_path / 'grey48.png', samples.shape[1], samples.shape[0], 16, 2,
                       (np.repeat(row[:, None], 3, axis=1).astype('>u2').tobytes() for row in samples))
    np.testing.assert_array_equal(_pixels(read_image(grey)), _pixels(read_image(grey48)))


def test_16_bit_tiff_and_pgm_are_scaled_alike(tmp_path):
    samples = _ramp16()
    tiff = tmp_path / 'grey16.tif'
    Image.fromarray(samples).save(tiff)
    # A 12-bit PGM: PIL scales its samples to 16 bits and holds them as 32-bit integers (mode I).
    twelve = np.linspace(0, 4095, samples.size).round().astype(np.uint16).reshape(samples.shape)
    pgm = tmp_path / 'grey12.pgm'
    pgm.write_bytes(b'P5\n%d %d\n4095\n' % (samples.shape[1], samples.shape[0]) + twelve.astype('>u2').tobytes())
    with Image.open(pgm) as image:
        assert image.mode == 'I'
        scaled = np.asarray(image)
    assert scaled.max() == 65535
    np.testing.assert_array_equal(_pixels(read_image(tiff))[..., 0], samples >> 8)
    np.testing.assert_array_equal(_pixels(read_image(pgm))[..., 0], scaled >> 8)


def test_float_tiff_in_0_1_is_scaled_by_255(tmp_path):
    samples = np.linspace(0, 1, 8 * 64, dtype=np.float32).reshape(8, 64)
    path = tmp_path / 'float.tif'
    Image.fromarray(samples).save(path)
    with Image.open(path) as image:
        assert image.mode == 'F' and np.asarray(image.convert('RGB')).max() <= 1  # what convert('RGB') does: black
    np.testing.assert_array_equal(_pixels(read_image(path))[..., 0], np.rint(samples * 255).astype(np.uint8))
    assert _pixels(read_image(path)).max() == 255


@pytest.mark.parametrize('samples, reason', [
    (np.linspace(0, 255, 64, dtype=np.float32), r'float samples hold values in \[0, 255\], and only \[0, 1\]'),
    (np.array([0.5, np.nan] * 32, dtype=np.float32), 'float samples hold non-finite values'),
    (np.arange(64, dtype=np.int32) * 1000, 'samples are 32-bit integers, which have no standard white level'),
])
def test_samples_without_a_standard_white_level_are_refused(tmp_path, samples, reason):
    path = tmp_path / 'image.tif'
    Image.fromarray(samples.reshape(8, 8)).save(path)
    with pytest.raises(ImageReadError, match=f'^cannot read image {re.escape(str(path))}: its {reason}') as e:
        read_image(path)
    assert '\n' not in str(e.value)


def _halves_jpeg(path: Path, orientation: int, exif_tags: Optional[dict] = None) -> Path:
    """A 48 x 32 JPEG stored with its left half red and its right half blue, and an EXIF orientation."""
    stored = Image.new('RGB', (48, 32), BLUE)
    stored.paste(RED, (0, 0, 24, 32))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif.update(exif_tags or {})
    stored.save(path, exif=exif, quality=95)
    return path


def _mean(pixels: np.ndarray) -> np.ndarray:
    return pixels.reshape(-1, 3).mean(axis=0)


# Orientation 6: the camera was turned clockwise, the viewer turns the stored image 90 degrees clockwise, so its left
# half ends on top; 8 is the other way round.
@pytest.mark.parametrize('orientation, top, bottom', [(6, RED, BLUE), (8, BLUE, RED), (1, None, None)])
def test_exif_orientation_is_applied(tmp_path, orientation, top, bottom):
    path = _halves_jpeg(tmp_path / 'photo.jpg', orientation)
    pixels = _pixels(read_image(path))
    if top is None:  # upright as stored
        assert pixels.shape == (32, 48, 3)
        np.testing.assert_allclose(_mean(pixels[:, 4:20]), RED, atol=8)
        return
    assert pixels.shape == (48, 32, 3)  # height x width: turned a quarter
    np.testing.assert_allclose(_mean(pixels[4:20]), top, atol=8)
    np.testing.assert_allclose(_mean(pixels[28:44]), bottom, atol=8)


def test_an_exif_block_pil_cannot_write_back_still_turns_the_image(tmp_path):
    # PIL turns the pixels, then rewrites the EXIF block without the orientation; an ASCII value in tag 292 (an
    # integer tag) fails that rewrite. The pixels are still turned, and the file is no less readable than before.
    path = _halves_jpeg(tmp_path / 'photo.jpg', 6, {0x010F: 'Cam'})
    data = path.read_bytes()
    for endian in '<>':  # retag 0x010F (Make, ASCII) as 0x0124, keeping its ASCII type
        data = data.replace(struct.pack(f'{endian}HH', 0x010F, 2), struct.pack(f'{endian}HH', 0x0124, 2))
    path.write_bytes(data)
    with Image.open(path) as image, pytest.raises(struct.error):
        assert image.getexif().get(0x0124) == 'Cam'
        ImageOps.exif_transpose(image)
    pixels = _pixels(read_image(path))
    assert pixels.shape == (48, 32, 3)
    np.testing.assert_allclose(_mean(pixels[4:20]), RED, atol=8)


def test_tiny_hostile_images_are_refused_in_one_line_before_decoding(tmp_path):
    images = hostile_images(tmp_path)
    assert images['wide'].stat().st_size < 1000 and images['bomb'].stat().st_size < 100_000
    with pytest.raises(ImageReadError) as e:
        read_image(images['wide'])
    assert str(e.value).startswith(f"cannot read image {images['wide']}: it is 40000 x 1 px, an aspect ratio of "
                                   f'40000:1, above the limit of {MAX_ASPECT_RATIO}:1')
    with pytest.raises(ImageReadError) as e:
        read_image(images['bomb'])
    assert str(e.value).startswith(f"cannot read image {images['bomb']}: Image size (196000000 pixels) exceeds limit "
                                   f'of {2 * Image.MAX_IMAGE_PIXELS} pixels')
    assert "PIL's decompression-bomb limit" in str(e.value)
    # Within the limit, however thin: 100:1 is read.
    Image.new('L', (100 * 3, 3)).save(tmp_path / 'strip.png')
    assert read_image(tmp_path / 'strip.png').size == (300, 3)


def test_no_other_image_reader_in_the_sources():
    # predict, validate, attention, the int8 calibration and the benchmarks read images through read_image alone.
    sources = [*(REPO / 'timm_sesk').rglob('*.py'), *(REPO / 'benchmarks').rglob('*.py')]
    readers = [p for p in sources if 'Image.open(' in p.read_text() and p.name != 'data.py']
    assert sources and not readers
