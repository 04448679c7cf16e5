"""Write the `camera` photograph bundled with scikit-image as a float matrix for dgdlocal.

    pip install scikit-image            # only needed to regenerate the file
    python data/make_image.py           # -> data/camera-256.npy (256×256, float32, values in [0, 1])
    python data/make_image.py --size 512 --output camera-512.npy

The image ships inside the scikit-image wheel (skimage/data/camera.png), so no
download happens. It is a 512×512 grey-level photograph by Lav Varshney, released
under CC0 (no copyright restrictions; see `help(skimage.data.camera)`).
Downsampling averages size×size blocks of pixels, so every entry is an exact
mean of the original 8-bit values divided by 255.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def camera(size: int = 256) -> np.ndarray:
    """The camera image as a size×size float matrix in [0, 1] (block means of the 512×512 original)."""
    try:
        from skimage import data
    except ImportError:
        sys.exit("make_image.py needs scikit-image, which bundles the image: pip install scikit-image")
    image = np.asarray(data.camera(), dtype=np.float64) / 255.0
    full = image.shape[0]
    if full % size:
        sys.exit(f"--size must divide {full}; got {size}")
    factor = full // size
    return image.reshape(size, factor, size, factor).mean(axis=(1, 3))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="side of the square matrix, a divisor of 512 (default 256)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="stored precision (default float32, half the file size)")
    parser.add_argument("--output", help="file to write (default data/camera-SIZE.npy)")
    arguments = parser.parse_args(argv)
    output = arguments.output or os.path.join(HERE, f"camera-{arguments.size}.npy")
    Y = camera(arguments.size).astype(arguments.dtype)
    np.save(output, Y)
    print(f"wrote {output}: {Y.shape[0]}×{Y.shape[1]} {Y.dtype}, values in [{Y.min():.3f}, {Y.max():.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
