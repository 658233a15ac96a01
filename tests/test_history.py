import numpy as np
import pytest

from minimodels.training.history import smooth


def test_smooth_is_a_moving_average():
    values = [1.0, 2.0, 3.0, 10.0, 5.0]
    expected = [(1 + 2 + 3) / 3, (2 + 3 + 10) / 3, (3 + 10 + 5) / 3]  # by hand
    assert np.allclose(smooth(values, 3), expected)
    assert np.allclose(smooth(values, 1), values)
    assert len(smooth(list(range(100)), 10)) == 91
    assert np.allclose(smooth(np.full(50, 2.5), 7), 2.5)


def test_smooth_short_input_and_errors():
    assert np.array_equal(smooth([1, 2], 5), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="window"):
        smooth([1.0, 2.0], 0)
    with pytest.raises(ValueError, match="one-dimensional"):
        smooth(np.zeros((2, 3)), 2)
