"""One module per DVC stage, named as the stage and its command: ``stages/teacher.py`` is
``featherface teacher``, DVC stage ``teacher``. Each reads its ``params.yaml`` sections, opens its
tracking run, calls library functions and writes its outputs and metrics.

:mod:`featherface.stages.training` holds what the three training stages share. Stage modules
never import each other, and no library package imports this one.
"""
