"""vitutils: the companion package of *Vision Transformers from Scratch*.

Every chapter of the book builds one piece of the Vision Transformer (Dosovitskiy et al., 2021) by hand and
then keeps the final version here, once. Later chapters import it instead of redefining it.

One concept per module:

- `vitutils.patches`: cutting images into patches and back (chapter 1).
- `vitutils.embedding`: patch embedding and the class token (chapter 2).
- `vitutils.positional`: learned, sinusoidal and relative position encodings (chapter 3).
- `vitutils.attention`, `vitutils.block`, `vitutils.vit`, `vitutils.pretrained`: chapters 4 to 6.
- `vitutils.data`, `vitutils.viz`, `vitutils.widgets`: photos, CIFAR-10, figures and explorers.
"""

__version__ = "0.1.0"
