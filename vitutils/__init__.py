"""vitutils: the companion package of *Vision Transformers from Scratch*.

Every chapter of the book builds one piece of the Vision Transformer (Dosovitskiy et al., 2021) by hand and
then keeps the final version here, once. Later chapters import it instead of redefining it.

One concept per module:

- `vitutils.patches`: cutting images into patches and back (chapter 1).
- `vitutils.embedding`: patch embedding and the class token (chapter 2).
- `vitutils.positional`: learned, sinusoidal and relative position encodings (chapter 3).
- `vitutils.attention`: scaled dot-product and multi-head attention, the fast-path switch (chapter 4).
- `vitutils.block`, `vitutils.vit`: the encoder block and the whole model with its config (chapters 5, 6).
- `vitutils.cost`: parameters, FLOPs per part and memory of a ViT (chapters 1, 6, 9); `vitutils.measure`:
  timing and peak memory on this machine (chapter 9); `vitutils.pretrained`: published weights;
  `vitutils.benchmark`: throughput against transformers (chapter 6).
- `vitutils.axial`: axial attention and the axial position embedding (chapter 10); the
  `ViTConfig(attn_type="axial")` switch builds an axial ViT, `measure.axial_sweep` times it.
- `vitutils.data`: sample photos, preprocessing, CIFAR-10 and its validation split.
- `vitutils.recipes`, `vitutils.optim`, `vitutils.augment`, `vitutils.train`, `vitutils.evaluation`,
  `vitutils.checkpoint`, `vitutils.ablation`: training on CIFAR-10 (chapter 7); the trained run ships in
  `vitutils/weights/` and `checkpoint.load_bundled()` loads it.
- `vitutils.analysis`: attention rollout, mean attention distance, Figure 7's panels (chapter 8); the
  row, column and composed maps of axial attention (chapter 10).
- `vitutils.viz`: the figures, one module per topic, and the explorers' declarations;
  `vitutils.explorer` renders an explorer live (ipywidgets) and static (`vitutils.html_explorer`).
- `vitutils.notebook`: helpers for the chapters (showing source, checks that print what they measured).
"""

__version__ = "0.1.0"
