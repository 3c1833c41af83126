"""Stage 3, enhance: recipes (``recipes``) run by the stage pipeline (``pipeline``: camera
``defects``, ``restore``, ``tone``), rendered for screen and full resolution through the render
cache (``render``), and the editor service with history, the regression guard and batches
(``edits``). ``defect_synth`` makes synthetic camera defects for evaluation and tests."""
