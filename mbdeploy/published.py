"""Published figures, kept as the data they are, with their sources.

`PUBLISHED` is the 16-model table of the original release README (TF-Slim's
MobileNet_v1.md, 2017-06-14): million MACs, million params, ImageNet top-1
and top-5. `mbdeploy table` prints it beside our own counts; `report` and
`select` use the top-1 for models with official weights.

The paper's own tables are kept too, so tests compare our arithmetic against
them and users can see where the published numbers disagree with each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mbdeploy.architecture import model_name


@dataclass(frozen=True)
class PublishedRow:
    name: str
    alpha: float
    resolution: int
    million_macs: float
    million_params: float
    top1: float
    top5: float

    def to_dict(self) -> dict:
        return asdict(self)


_RELEASE_TABLE = (
    # alpha, res, M MACs, M params, top-1, top-5
    (1.0, 224, 569, 4.24, 70.7, 89.5),
    (1.0, 192, 418, 4.24, 69.3, 88.9),
    (1.0, 160, 291, 4.24, 67.2, 87.5),
    (1.0, 128, 186, 4.24, 64.1, 85.3),
    (0.75, 224, 317, 2.59, 68.4, 88.2),
    (0.75, 192, 233, 2.59, 67.4, 87.3),
    (0.75, 160, 162, 2.59, 65.2, 86.1),
    (0.75, 128, 104, 2.59, 61.8, 83.6),
    (0.5, 224, 150, 1.34, 64.0, 85.4),
    (0.5, 192, 110, 1.34, 62.1, 84.0),
    (0.5, 160, 77, 1.34, 59.9, 82.5),
    (0.5, 128, 49, 1.34, 56.2, 79.6),
    (0.25, 224, 41, 0.47, 50.6, 75.0),
    (0.25, 192, 34, 0.47, 49.0, 73.6),
    (0.25, 160, 21, 0.47, 46.0, 70.7),
    (0.25, 128, 14, 0.47, 41.3, 66.2),
)

PUBLISHED: dict[str, PublishedRow] = {
    model_name(a, r): PublishedRow(model_name(a, r), a, r, macs, params, top1, top5)
    for a, r, macs, params, top1, top5 in _RELEASE_TABLE
}

# The paper, arXiv:1704.04861. Tables 6 and 7: (alpha, resolution) -> (M Mult-Adds, M params).
PAPER_TABLE_6 = {1.0: (569, 4.2), 0.75: (325, 2.6), 0.5: (149, 1.3), 0.25: (41, 0.5)}
PAPER_TABLE_7 = {224: (569, 4.2), 192: (418, 4.2), 160: (290, 4.2), 128: (186, 4.2)}

# Table 2, 1.0 MobileNet-224: layer type -> (% of Mult-Adds, % of params).
PAPER_TABLE_2 = {
    "Conv 1x1": (94.86, 74.59),
    "Conv DW 3x3": (3.06, 1.06),
    "Conv 3x3": (1.19, 0.02),
    "Fully Connected": (0.18, 24.33),
}

# Where published numbers contradict the paper or each other. Shown to users,
# never hidden; each entry says why we believe our count.
KNOWN_DISCREPANCIES: dict[str, str] = {
    "mobilenet_v1_0.75_224": (
        "the release says 317 M MACs; the paper's Table 6 (and our count) says 325 M"
    ),
    "mobilenet_v1_0.75_192": (
        "the release says 233 M MACs; the paper's Table 12 (and our count) says 239 M"
    ),
    "mobilenet_v1_0.25_192": (
        "the release says 34 M MACs, off the resolution-squared scaling of its "
        "neighbours (41 M at 224 x (192/224)^2 = 30 M); our count is 30 M"
    ),
    "table2:Conv 3x3": (
        "the paper's Table 2 gives the first 3x3 conv 1.19% of Mult-Adds, but its "
        "column sums to 99.29%; 112*112*3*3*3*32 = 10.8 M of 568.7 M is 1.91%, "
        "which makes the column sum to 100%"
    ),
}

# Release MACs are rounded to whole millions; compare at that precision.
MACS_TOLERANCE = 0.03
PARAMS_TOLERANCE = 0.03


def macs_agree(ours: int, published_million: float) -> bool:
    """Within 3% after rounding ours to the whole millions the release prints."""
    return abs(round(ours / 1e6) - published_million) <= MACS_TOLERANCE * published_million


def comparison_table() -> list[dict]:
    """The 16-model grid: our MACs and params beside the published figures."""
    from mbdeploy.accounting import model_cost
    from mbdeploy.architecture import grid_specs

    rows = []
    for spec in grid_specs():
        cost = model_cost(spec)
        published = PUBLISHED[spec.name]
        macs_ok = macs_agree(cost.macs, published.million_macs)
        params_ok = abs(cost.params / 1e6 - published.million_params) <= PARAMS_TOLERANCE * published.million_params
        note = KNOWN_DISCREPANCIES.get(spec.name)
        if not macs_ok and note is None:
            note = "our MAC count differs from the release by more than 3%"
        rows.append(
            {
                "name": spec.name,
                "alpha": spec.alpha,
                "resolution": spec.resolution,
                "macs": cost.macs,
                "params": cost.params,
                "published_macs_m": published.million_macs,
                "published_params_m": published.million_params,
                "published_top1": published.top1,
                "published_top5": published.top5,
                "macs_diff_percent": 100.0 * (cost.macs / 1e6 - published.million_macs) / published.million_macs,
                "agrees": macs_ok and params_ok,
                "discrepancy": note,
            }
        )
    return rows
