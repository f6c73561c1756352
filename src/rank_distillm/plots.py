"""One figure style for the whole book (seaborn), and names for the systems it plots."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

PALETTE = "colorblind"


def set_theme() -> None:
    """The book's seaborn theme: white grid, colour-blind palette, readable sizes."""
    sns.set_theme(style="whitegrid", palette=PALETTE, context="notebook", rc={"figure.dpi": 110, "figure.figsize": (7.0, 4.0)})
    plt.rcParams["axes.titleweight"] = "bold"
