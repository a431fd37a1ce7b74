"""The book's figures: pure plotting functions that each return a matplotlib Figure, one module per topic.

- `viz.patches`: an image as a grid and as a sequence of patches (chapter 1);
- `viz.positional`: position encodings, heatmaps and the similarity maps of the paper's Figure 7 (chapter 3);
- `viz.attention`: where a patch of a photo attends before any training (chapter 4);
- `viz.architecture`: the whole model, its parts and their shapes (chapter 6);
- `viz.training`: augmentations, schedules, training curves and the errors of a trained model (chapter 7);
- `viz.analysis`: Figure 7's panels, class-token attention and rollout of a trained model (chapter 8);
- `viz.cost`: FLOPs per part and memory at the peak of a model size, image size and patch size (chapter 9);
- `viz.axial`: a query patch's row step, column step and what both reach (chapter 10).

They draw what the other modules compute and never compute it themselves. Every figure has a title and
labelled axes; colour maps are viridis/magma, and RdBu for signed values. The explorers of the chapters are
declared here too (`patch_explorer`, `positional_explorer`, `attention_explorer`, `inside_explorer`,
`cost_explorer`, `axial_explorer`): see `vitutils.explorer`.
Everything is re-exported, so ``from vitutils import viz`` then ``viz.plot_patch_grid(...)`` works.
"""

from vitutils.viz.analysis import *  # noqa: F403
from vitutils.viz.analysis import __all__ as _analysis
from vitutils.viz.architecture import *  # noqa: F403
from vitutils.viz.architecture import __all__ as _architecture
from vitutils.viz.attention import *  # noqa: F403
from vitutils.viz.attention import __all__ as _attention
from vitutils.viz.axial import *  # noqa: F403
from vitutils.viz.axial import __all__ as _axial
from vitutils.viz.cost import *  # noqa: F403
from vitutils.viz.cost import __all__ as _cost
from vitutils.viz.patches import *  # noqa: F403
from vitutils.viz.patches import __all__ as _patches
from vitutils.viz.positional import *  # noqa: F403
from vitutils.viz.positional import __all__ as _positional
from vitutils.viz.training import *  # noqa: F403
from vitutils.viz.training import __all__ as _training

__all__ = [
    *_patches,
    *_positional,
    *_attention,
    *_architecture,
    *_training,
    *_analysis,
    *_cost,
    *_axial,
]
