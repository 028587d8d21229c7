"""LabelVetter: before training, the latest blessed model scores the new labelled data and stops
the run when its agreement with the new labels collapses for a class, or its disagreements
concentrate on one other class (a label swap).

  component.py  the component, its spec, its LabelVettingResult artifact, and the resolver of the
                latest blessed model with the examples its Trainer read (through ML Metadata)
  executor.py   scores both datasets through the model's serving signature, records, stops
  vetting.py    the per-class comparison and its findings in words; LabelVettingError (exit code 1,
                a DataValidationError like the data gate's). The run report reads its JSON.
"""
