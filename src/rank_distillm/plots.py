"""One style for the whole book: seaborn figures, and numbers shown as plain numbers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

PALETTE = "colorblind"


def set_theme() -> None:
    """The book's theme: white grid, colour-blind palette, readable sizes.

    NumPy scalars print as plain numbers (``0.6611``, not ``np.float64(0.6611)``), so values
    glued into the text read as numbers.
    """
    np.set_printoptions(legacy="1.25")
    sns.set_theme(style="whitegrid", palette=PALETTE, context="notebook", rc={"figure.dpi": 110, "figure.figsize": (7.0, 4.0)})
    plt.rcParams["axes.titleweight"] = "bold"
