"""The material of ``rmsprop demo``: the seed's examples, 2-D surfaces, and digits training.

Nothing here is imported by ``import rmsprop``; matplotlib is needed only to draw
the figures (``pip install 'rmsprop[demo]'``).
"""
