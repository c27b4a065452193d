"""Comparing groups of (param, grad, [state buffers]) tensors as the kernel tests build them."""


def assert_identical(ours, theirs):
    """Parameters and state buffers equal bit for bit (NaN equal to NaN), same strides."""
    for (p, _, bs), (q, _, cs) in zip(ours, theirs, strict=True):
        for x, y in zip([p, *bs], [q, *cs], strict=True):
            assert x.shape == y.shape and x.stride() == y.stride()
            same = (x == y) | (x.isnan() & y.isnan())
            assert bool(same.all()), f"{int((~same).sum())} of {x.numel()} differ"
