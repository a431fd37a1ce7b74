"""Everything the book feeds into a Vision Transformer: sample photos and their preprocessing (`images`),
and CIFAR-10 with its validation split (`cifar10`). Both are re-exported here, so ``from vitutils import
data`` then ``data.preprocess(...)`` or ``data.load_cifar10(...)`` works.
"""

from vitutils.data.cifar10 import *  # noqa: F403
from vitutils.data.cifar10 import __all__ as _cifar10_all
from vitutils.data.images import *  # noqa: F403
from vitutils.data.images import __all__ as _images_all

__all__ = [*_images_all, *_cifar10_all]
