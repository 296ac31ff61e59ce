import numpy as np
import pytest
from PIL import Image

from conftest import write_images
from visreps.data import find_images, load_image
from visreps.errors import ImageError


def test_order_is_posix_sorted_and_labels_are_folders(image_dir):
    items = find_images(image_dir)
    assert [i.path for i in items] == ["a.jpg", "b.png", "cls1/c.png", "cls1/deep/d.bmp", "cls2/e.JPG", "cls2/f.tif"]
    assert [i.label for i in items] == ["", "", "cls1", "cls1/deep", "cls2", "cls2"]


def test_all_extensions_any_case(tmp_path):
    names = ["x1.jpg", "x2.JPEG", "x3.png", "x4.Bmp", "x5.gif", "x6.tif", "x7.TIFF", "x8.webp"]
    write_images(tmp_path, names)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.jpg").write_bytes(b"")
    assert sorted(i.path for i in find_images(tmp_path)) == sorted(names)


def test_missing_and_empty_folder(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        find_images(tmp_path / "nope")
    with pytest.raises(ImageError, match="no images found"):
        find_images(tmp_path)


def test_order_file(image_dir, tmp_path):
    order = tmp_path / "order.txt"
    order.write_text("# my order\ncls2/f.tif\n\na.jpg\ncls1\\deep\\d.bmp\n")
    items = find_images(image_dir, order=order)
    assert [i.path for i in items] == ["cls2/f.tif", "a.jpg", "cls1/deep/d.bmp"]
    order.write_text("a.jpg\nmissing.png\n")
    with pytest.raises(ImageError, match=r"line 2: 'missing.png' does not exist"):
        find_images(image_dir, order=order)
    order.write_text("a.jpg\nb.png\na.jpg\n")
    with pytest.raises(ImageError, match=r"line 3: 'a.jpg' is listed twice \(first on line 1\)"):
        find_images(image_dir, order=order)
    with pytest.raises(ImageError, match="order file .* does not exist"):
        find_images(image_dir, order=tmp_path / "none.txt")


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA", "1", "I;16", "I", "F"])
def test_every_colour_mode_becomes_rgb(tmp_path, mode):
    base = Image.fromarray(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (8, 1)))
    if mode == "I;16":
        img = Image.fromarray(np.asarray(base).astype(np.uint16) * 257)
        assert img.mode == "I;16"
    elif mode == "I":
        img = Image.fromarray(np.asarray(base).astype(np.int32) * 257)
    elif mode == "F":
        img = Image.fromarray(np.asarray(base).astype(np.float32) / 255.0)
    else:
        img = base.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("I;16", "I", "F", "CMYK") else "x.png")
    img.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (32, 8)
    arr = np.asarray(out)
    if mode in ("L", "I;16", "I", "F", "LA", "P", "RGBA"):
        # grey ramp survives: 16-bit is scaled, not clipped to white
        np.testing.assert_allclose(arr[0, :, 0], np.arange(0, 256, 8), atol=1)


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (20, 40)


def test_bad_files_named(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="zero.jpg.*empty"):
        load_image(tmp_path / "zero.jpg")
    (tmp_path / "junk.png").write_bytes(b"this is not a png")
    with pytest.raises(ImageError, match="junk.png"):
        load_image(tmp_path / "junk.png")
    write_images(tmp_path, ["full.jpg"], size=(64, 64))
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="trunc.jpg"):
        load_image(tmp_path / "trunc.jpg")
