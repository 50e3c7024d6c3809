"""The nesmeter distribution's folder; a package only so that pytest tells ``lib.tests`` from ``tests``.

The root suite (``pytest`` at the top) runs both; hatch builds ``src/nesmeter`` alone.
"""
