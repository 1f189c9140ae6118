"""Synthetic smear fields with known cells."""

import numpy as np

from marrowdiff.synthetic.fields import FieldConfig, make_field


def test_the_field_generator_places_touching_and_border_cells(patches):
    config = FieldConfig(height=540, width=660, cells=8, touching=1.0, border_cells=1)
    field, truth = make_field(patches, [str(i) for i in range(20)], config, seed=3)
    assert field.shape == (540, 660, 3) and field.dtype == np.uint8
    assert truth[0].border and not any(c.border for c in truth[1:])
    radius = config.disc * config.patch_size
    xy = np.array([[c.y, c.x] for c in truth])
    gaps = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))[np.triu_indices(len(xy), 1)]
    assert gaps.min() >= 1.6 * radius - 1e-6  # close, never on top of each other
    assert (gaps < 1.85 * radius).any()  # some touch
