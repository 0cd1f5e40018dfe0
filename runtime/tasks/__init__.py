"""One module per task (detector, pose, segmenter, classifier, face, semantic) and ``dispatch``
(``open_model``: the task class a model's spec names). Import the module you need: this package
imports nothing, so ``Detector`` alone never loads the other tasks."""
